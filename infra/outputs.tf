output "firestore_database_name" {
  description = "Firestore database id (pass it to the functions as the database setting)."
  value       = google_firestore_database.main.name
}

output "firestore_database_id" {
  description = "Full resource id of the Firestore database (projects/{project}/databases/{name})."
  value       = google_firestore_database.main.id
}

output "ingest_url" {
  description = "POST an ingest request here (callers need run.invoker: var.api_invokers)."
  value       = google_cloudfunctions2_function.ingest.service_config[0].uri
}

output "jobs_api_url" {
  description = "Base URL of the jobs REST API and pages (/jobs, /ui)."
  value       = google_cloudfunctions2_function.jobs_api.service_config[0].uri
}

output "ingest_topic" {
  description = "Pub/Sub topic whose messages (an IngestRequest as JSON) ingest_pubsub submits."
  value       = google_pubsub_topic.ingest.name
}

output "collections_bucket" {
  description = "Cloud Storage bucket of the LanceDB collections (user data: terraform destroy fails on it while it holds a collection)."
  value       = google_storage_bucket.collections.name
}

output "lancedb_uri" {
  description = "The LanceDB database the functions write (FANOUT_LANCEDB_URI): open it with lancedb.connect() to read a collection."
  value       = local.lancedb_uri
}

output "ingest_push_subscription" {
  description = "The push subscription that delivers fanout-ingest to ingest_pubsub (5 attempts, then the dead-letter topic)."
  value       = google_pubsub_subscription.ingest_push.name
}

output "dead_letter_subscription" {
  description = "Pull subscription of messages ingest_pubsub refused 5 times, kept 7 days: gcloud pubsub subscriptions pull SUBSCRIPTION --auto-ack."
  value       = google_pubsub_subscription.ingest_dead_letter.name
}

output "ci_image" {
  description = "Where cloudbuild-ci-image.yaml pushes the image cloudbuild.yaml tests on."
  value       = "${google_artifact_registry_repository.fanout.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.fanout.repository_id}/ci"
}

output "build_service_account" {
  description = "The account Cloud Build builds the functions as."
  value       = local.build_service_account
}
