# Cloud Scheduler calls cleanup_jobs: sweep stuck work (expired leases, batches never
# enqueued, parents left running) and delete jobs past the retention.

resource "google_service_account" "scheduler" {
  account_id   = "fanout-scheduler"
  display_name = "Fanout: Cloud Scheduler -> cleanup_jobs"

  depends_on = [google_project_service.apis]
}

# run.invoker on cleanup_jobs' Cloud Run service only (see queue.tf for why run.invoker).
resource "google_cloud_run_service_iam_member" "cleanup_jobs_scheduler" {
  project  = var.project_id
  location = google_cloudfunctions2_function.cleanup_jobs.location
  service  = google_cloudfunctions2_function.cleanup_jobs.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

resource "google_cloud_scheduler_job" "cleanup" {
  name        = "fanout-cleanup"
  description = "Runs Fanout's cleanup_jobs: sweep stuck work, delete expired jobs."
  region      = var.region
  schedule    = var.cleanup_schedule
  time_zone   = "Etc/UTC"

  # Wait as long as cleanup_jobs may run, so a long sweep is not logged as a failed attempt.
  attempt_deadline = "${google_cloudfunctions2_function.cleanup_jobs.service_config[0].timeout_seconds}s"

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.cleanup_jobs.service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.cleanup_jobs.service_config[0].uri
    }
  }

  # The first run should already be allowed in.
  depends_on = [google_cloud_run_service_iam_member.cleanup_jobs_scheduler]
}
