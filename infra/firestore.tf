# Firestore configuration that the Fanout code relies on: TTL, single-field
# index exemptions, and the composite indexes its queries need.
#
# Data model (see docs/design.md):
#   jobs/{job_id}                              parent job
#   jobs/{job_id}/batches/{job_id}_{NNNN}      one sub-job per batch
#   jobs/{job_id}/counters/{k}                 counter shards
#   jobs/{job_id}/leases/..., jobs/{job_id}/done/...  once-markers (claims, counting, finalize)
#   idempotency/{sha256}                       client_id + request_id -> job_id
#
# Keep this file in step with the queries in functions/store/firestore.py:
# a query without its index fails on real Firestore with FAILED_PRECONDITION.

# ---------------------------------------------------------------------------
# TTL: Firestore deletes a parent job some time (usually < 24 h) after its
# expire_at. TTL does NOT delete subcollections (batches, counters, done,
# leases); cleanup_jobs deletes those.
# expire_at stays indexed (no index_config block): cleanup may range-query it.
# ---------------------------------------------------------------------------
resource "google_firestore_field" "jobs_expire_at_ttl" {
  count = var.job_ttl_enabled ? 1 : 0

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "jobs"
  field      = "expire_at"

  ttl_config {}
}

# ---------------------------------------------------------------------------
# Single-field index exemptions: large map/array values that are never
# queried. An empty index_config {} disables every single-field index on the
# field, which saves index writes and storage, and keeps big values off the
# per-document index-entry limit.
# ---------------------------------------------------------------------------
resource "google_firestore_field" "jobs_request_no_index" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "jobs"
  field      = "request"

  index_config {}
}

resource "google_firestore_field" "batches_items_no_index" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "batches"
  field      = "items"

  index_config {}
}

resource "google_firestore_field" "batches_error_details_no_index" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "batches"
  field      = "error_details"

  index_config {}
}

# ---------------------------------------------------------------------------
# Fields that every batch writes with values that only grow (timestamps,
# counts), at up to the queue's dispatch rate. Firestore caps writes to a
# collection with sequential indexed values near 500/s; a field that no query
# filters, orders or sums on is lifted out of that cap by indexing nothing on
# it. The sweeper's queries on batches use composite indexes (below), and
# counter shards are read whole, never aggregated (docs/design.md, "The write
# budget"). The planner writes a page of batches (their created_at) in one
# commit, and the job's planning counts, page after page: none is queried.
# ---------------------------------------------------------------------------
locals {
  per_batch_unindexed_fields = [
    "batches.created_at",
    "jobs.planned_items",
    "jobs.plan_pages",
    "jobs.plan_cursor",
    "batches.started_at",
    "batches.heartbeat_at",
    "batches.finished_at",
    "leases.at",
    "leases.lease_expires_at",
    "done.at",
    "done.status",
    "counters.completed_batches",
    "counters.failed_batches",
    "counters.cancelled_batches",
    "counters.files",
    "counters.processed",
    "counters.failed",
    "counters.chunks",
    "counters.documents",
    "counters.skipped",
    "counters.bytes_read",
    "counters.unchanged",
    "counters.embedded",
  ]
}

resource "google_firestore_field" "per_batch_no_index" {
  for_each = toset(local.per_batch_unindexed_fields)

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = split(".", each.value)[0]
  field      = split(".", each.value)[1]

  index_config {}
}

# ---------------------------------------------------------------------------
# Composite indexes on jobs (top-level collection, COLLECTION scope).
# Every list query orders by job_id DESCENDING, with optional equality/in
# filters on status, source, client_id and priority: one index per non-empty
# subset of those filters, in the order (status, source, client_id, priority),
# then job_id DESC.
# finished_at range queries use the automatic single-field index.
# ---------------------------------------------------------------------------
resource "google_firestore_index" "jobs_status_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "jobs_source_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "source"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "jobs_client_id_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "client_id"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "jobs_status_source_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "source"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "jobs_status_client_id_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "client_id"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "jobs_source_client_id_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "source"
    order      = "ASCENDING"
  }

  fields {
    field_path = "client_id"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "jobs_status_source_client_id_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "source"
    order      = "ASCENDING"
  }

  fields {
    field_path = "client_id"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

# The same with priority (GET /jobs?priority=), last among the equality filters.
resource "google_firestore_index" "jobs_priority_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "priority"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "jobs_status_priority_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "priority"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "jobs_source_priority_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "source"
    order      = "ASCENDING"
  }

  fields {
    field_path = "priority"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "jobs_client_id_priority_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "client_id"
    order      = "ASCENDING"
  }

  fields {
    field_path = "priority"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "jobs_status_source_priority_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "source"
    order      = "ASCENDING"
  }

  fields {
    field_path = "priority"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "jobs_status_client_id_priority_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "client_id"
    order      = "ASCENDING"
  }

  fields {
    field_path = "priority"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "jobs_source_client_id_priority_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "source"
    order      = "ASCENDING"
  }

  fields {
    field_path = "client_id"
    order      = "ASCENDING"
  }

  fields {
    field_path = "priority"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

resource "google_firestore_index" "jobs_status_source_client_id_priority_job_id_desc" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "source"
    order      = "ASCENDING"
  }

  fields {
    field_path = "client_id"
    order      = "ASCENDING"
  }

  fields {
    field_path = "priority"
    order      = "ASCENDING"
  }

  fields {
    field_path = "job_id"
    order      = "DESCENDING"
  }
}

# Finished jobs whose callback is still owed, oldest attempt first (the sweeper's
# redelivery, FirestoreJobStore.find_undelivered_callbacks): status in [completed,
# failed], callback_pending_since < cutoff, ordered by callback_pending_since.
resource "google_firestore_index" "jobs_status_callback_pending_since" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "jobs"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "callback_pending_since"
    order      = "ASCENDING"
  }
}

# ---------------------------------------------------------------------------
# Composite indexes on batches (subcollection jobs/{job_id}/batches, queried
# per parent job, so COLLECTION scope). A collection-group query across all
# jobs would need COLLECTION_GROUP indexes instead.
# ---------------------------------------------------------------------------
# Batches of one job in a given status, in batch order (run / retry / progress).
resource "google_firestore_index" "batches_status_batch_index" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "batches"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "batch_index"
    order      = "ASCENDING"
  }
}

# Running batches whose lease has expired (sweep).
resource "google_firestore_index" "batches_status_lease_expires_at" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "batches"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "lease_expires_at"
    order      = "ASCENDING"
  }
}

# Batches recorded but never enqueued, in batch order (sweep).
resource "google_firestore_index" "batches_status_enqueued_batch_index" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "batches"
  query_scope = "COLLECTION"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "enqueued"
    order      = "ASCENDING"
  }

  fields {
    field_path = "batch_index"
    order      = "ASCENDING"
  }
}

# ---------------------------------------------------------------------------
# Collection-group indexes on batches (all jobs' batches at once: the sweeper's
# queries that must not read every running job).
# ---------------------------------------------------------------------------
# Pending batches whose task was enqueued before a cutoff, oldest first: their task
# was dropped after its last attempt (sweep, FirestoreJobStore.find_dropped).
resource "google_firestore_index" "batches_group_status_enqueued_at" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "batches"
  query_scope = "COLLECTION_GROUP"

  fields {
    field_path = "status"
    order      = "ASCENDING"
  }

  fields {
    field_path = "enqueued_at"
    order      = "ASCENDING"
  }
}
