locals {
  # APIs this module needs.
  services = toset([
    "aiplatform.googleapis.com",       # Vertex AI text embeddings (the documents processor)
    "artifactregistry.googleapis.com", # function images
    "cloudbuild.googleapis.com",       # function builds
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com", # project IAM grants and the project number
    "cloudscheduler.googleapis.com",
    "cloudtasks.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com", # alert policies on the log-based metrics (monitoring.tf)
    "pubsub.googleapis.com",
    "run.googleapis.com",           # 2nd-gen functions run as Cloud Run services
    "secretmanager.googleapis.com", # the callback signing secret (callbacks.tf)
    "storage.googleapis.com",       # the function source, sources to ingest, LanceDB collections
  ])
}

# Its number names the Pub/Sub service agent (pubsub.tf).
data "google_project" "this" {
  project_id = var.project_id

  depends_on = [google_project_service.apis]
}

resource "google_project_service" "apis" {
  for_each = local.services

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

resource "google_firestore_database" "main" {
  project     = var.project_id
  name        = var.database_id
  location_id = var.firestore_location
  type        = "FIRESTORE_NATIVE"

  # Transactions take locks (read-modify-write is serialised), matching what
  # the store's transactional code expects on real Firestore.
  concurrency_mode                  = "PESSIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"

  # `terraform destroy` only forgets the database; it never deletes job data.
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.apis]
}
