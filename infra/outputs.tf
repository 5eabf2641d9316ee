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
