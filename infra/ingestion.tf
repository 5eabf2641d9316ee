# Where the documents processor (functions/ingestion/) reads and writes in the cloud:
#
#   source buckets   gs://BUCKET/PREFIX locations of requests; read-only, var.source_buckets
#   collections      the LanceDB database, one table per collection, in a bucket of its own
#
# Embeddings come from Vertex AI (roles/aiplatform.user in functions.tf, the API in main.tf).
# All five functions share one runtime account, so every grant here is to that account.

# ---------------------------------------------------------------------------
# Collections: LanceDB on Cloud Storage.
# ---------------------------------------------------------------------------
resource "google_storage_bucket" "collections" {
  #checkov:skip=CKV_GCP_62:Only fanout-functions reads or writes it; Cloud Audit Logs (Data Access) is where a project logs object access.
  #checkov:skip=CKV_GCP_78:Lance keeps its own table versions; bucket versions would keep (and bill) files Lance let go of.
  name                        = "${var.project_id}-fanout-collections"
  location                    = var.region # next to the functions that read and write it
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # It holds user data, which cannot be rebuilt without re-ingesting every source:
  # `terraform destroy` fails while it holds a collection rather than emptying it.
  force_destroy = false
  # No object versioning: Lance keeps its own table versions (and prunes them when a job
  # compacts the collection), so bucket versions would only keep files Lance let go of.
  # No soft delete either, for the same reason: compaction deletes files in bulk, and the
  # default 7 days would keep (and bill) every one of them for a week.
  soft_delete_policy {
    retention_duration_seconds = 0
  }

  depends_on = [google_project_service.apis]
}

locals {
  # The LanceDB database (FANOUT_LANCEDB_URI). A prefix rather than the bucket root leaves
  # room for anything else the bucket may hold later.
  lancedb_uri = "gs://${google_storage_bucket.collections.name}/lancedb"
}

# Read, create and delete objects in this bucket only: table writes, compaction and version
# cleanup. Lance commits with conditional puts (create-if-absent), which Cloud Storage does
# itself, so no lock service or other role is needed.
resource "google_storage_bucket_iam_member" "functions_collections" {
  bucket = google_storage_bucket.collections.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.functions.email}"
}

# ---------------------------------------------------------------------------
# Sources: list and read objects in each bucket requests may name (FANOUT_ALLOWED_BUCKETS
# is the same list). The buckets are not created or managed here; granting on them needs
# storage.buckets.setIamPolicy on each for whoever applies.
# ---------------------------------------------------------------------------
resource "google_storage_bucket_iam_member" "functions_sources" {
  for_each = toset(var.source_buckets)

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.functions.email}"
}
