# Cloud Tasks: one task per batch, delivered to run_batch with an OIDC token.
#
# One queue per priority class (functions/priority.py): a job's batches wait in its class's
# queue, so a high job never waits behind a normal or low backlog, and each class has its own
# dispatch rate and its own share of run_batch's capacity (max_concurrent_dispatches; the three
# add up to at most that capacity, so the high share is always free for high jobs).
#
# The local dispatcher (functions/queue/local.py) follows the same semantics; keep its
# defaults in functions/config.py (DispatchSettings) in step with these queues: it shares its
# slots between the classes in proportion to their dispatch rates (PriorityShares).

locals {
  # The queue's backoff bounds in seconds, one source for the queue (as durations) and the
  # functions (FANOUT_MIN/MAX_BACKOFF_SECONDS): numbers, never read back from the queue.
  # Retries at 1, 2, 4 ... 60 s: with var.max_attempts (10) they span about 4 minutes, so
  # the queue rides out a deploy or a worker restart by itself; a task that still runs out
  # is found by the sweeper asking the queue (GetTask), not by waiting.
  tasks_backoff_seconds = {
    min = 1
    max = 60
  }
}

# The normal class's queue (the default priority).
resource "google_cloud_tasks_queue" "batches" {
  name     = "fanout-batches"
  location = var.region

  rate_limits {
    max_dispatches_per_second = 500 # Cloud Tasks' per-queue maximum
    max_concurrent_dispatches = var.max_concurrent_dispatches
  }

  # Cloud Tasks stops retrying a task only when BOTH limits are reached: max_attempts and
  # max_retry_duration. "0s" means no time limit, so max_attempts alone decides, and it is
  # the same number the sweeper uses (FANOUT_MAX_ATTEMPTS) to fail a batch for good.
  retry_config {
    max_attempts       = var.max_attempts
    min_backoff        = "${local.tasks_backoff_seconds.min}s"
    max_backoff        = "${local.tasks_backoff_seconds.max}s"
    max_doublings      = 16
    max_retry_duration = "0s"
  }

  # Log every dispatch: a batch's deliveries and their HTTP status are then in Cloud Logging.
  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  lifecycle {
    # More dispatches than run_batch can take are answered 429, which Cloud Tasks retries as
    # failed attempts: a busy queue could use up the attempts of batches that never ran.
    # The three classes' queues together, so that none of them can take a share another counts on.
    precondition {
      condition     = var.max_concurrent_dispatches + var.high_priority_queue.max_concurrent_dispatches + var.low_priority_queue.max_concurrent_dispatches <= var.run_batch_max_instances * var.run_batch_concurrency
      error_message = "max_concurrent_dispatches + high_priority_queue.max_concurrent_dispatches + low_priority_queue.max_concurrent_dispatches exceeds run_batch_max_instances * run_batch_concurrency."
    }
  }

  depends_on = [google_project_service.apis]
}

# The high class's queue: urgent jobs, dispatched ahead of any normal or low backlog.
resource "google_cloud_tasks_queue" "batches_high" {
  name     = "fanout-batches-high"
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.high_priority_queue.max_dispatches_per_second
    max_concurrent_dispatches = var.high_priority_queue.max_concurrent_dispatches
  }

  # The same retries as the normal queue: the sweeper knows one retry window.
  retry_config {
    max_attempts       = var.max_attempts
    min_backoff        = "${local.tasks_backoff_seconds.min}s"
    max_backoff        = "${local.tasks_backoff_seconds.max}s"
    max_doublings      = 16
    max_retry_duration = "0s"
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.apis]
}

# The low class's queue: backfills, at a rate and concurrency that leave the rest to others.
resource "google_cloud_tasks_queue" "batches_low" {
  name     = "fanout-batches-low"
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.low_priority_queue.max_dispatches_per_second
    max_concurrent_dispatches = var.low_priority_queue.max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = var.max_attempts
    min_backoff        = "${local.tasks_backoff_seconds.min}s"
    max_backoff        = "${local.tasks_backoff_seconds.max}s"
    max_doublings      = 16
    max_retry_duration = "0s"
  }

  stackdriver_logging_config {
    sampling_ratio = 1.0
  }

  depends_on = [google_project_service.apis]
}

# The identity Cloud Tasks signs each task's OIDC token as. It can invoke run_batch and
# nothing else; the functions' runtime account may act as it (functions.tf) to create tasks.
resource "google_service_account" "tasks_invoker" {
  account_id   = "fanout-tasks-invoker"
  display_name = "Fanout: Cloud Tasks -> run_batch"

  depends_on = [google_project_service.apis]
}

# A 2nd-gen function's HTTP URL is served by its Cloud Run service (named like the function),
# so calling it is authorised by roles/run.invoker on that service. This is the only grant
# on run_batch: it stays private.
resource "google_cloud_run_service_iam_member" "run_batch_tasks_invoker" {
  project  = var.project_id
  location = google_cloudfunctions2_function.run_batch.location
  service  = google_cloudfunctions2_function.run_batch.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.tasks_invoker.email}"
}
