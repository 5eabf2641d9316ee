variable "project_id" {
  description = "Google Cloud project that hosts Fanout."
  type        = string
}

variable "region" {
  description = "Region for regional resources (functions, Cloud Tasks queue, scheduler)."
  type        = string
  default     = "us-central1"
}

variable "firestore_location" {
  description = "Firestore location (multi-region such as nam5/eur3, or a region). Cannot be changed after creation."
  type        = string
  default     = "nam5"
}

variable "database_id" {
  description = "Firestore database id. \"(default)\" or 4-63 chars of [a-z0-9-], starting with a letter."
  type        = string
  default     = "(default)"

  validation {
    condition     = var.database_id == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.database_id))
    error_message = "database_id must be \"(default)\" or 4-63 characters of [a-z0-9-], starting with a letter and ending with a letter or digit."
  }
}

variable "job_ttl_enabled" {
  description = "Enable Firestore's TTL policy on jobs.expire_at (parent job documents are deleted after expire_at; subcollections are left to cleanup_jobs)."
  type        = bool
  default     = true
}

# --- Functions ---------------------------------------------------------------

variable "api_invokers" {
  description = "IAM members (\"user:…\", \"group:…\", \"serviceAccount:…\") allowed to call ingest and jobs_api. Empty grants no one (never allUsers by default)."
  type        = list(string)
  default     = []
}

variable "allowed_roots" {
  description = "Directories a request's `location` may point into (FANOUT_ALLOWED_ROOTS). Empty leaves the code's default (samples/, which is not deployed), so requests must list their `items`."
  type        = list(string)
  default     = []
}

variable "retention_days" {
  description = "Days a finished job is kept before cleanup_jobs deletes it (FANOUT_RETENTION_DAYS)."
  type        = number
  default     = 30

  validation {
    condition     = var.retention_days >= 1 && floor(var.retention_days) == var.retention_days
    error_message = "retention_days must be a whole number of at least 1."
  }
}

variable "run_batch_max_instances" {
  description = "Max instances of run_batch. With run_batch_concurrency, it must cover the queue's max_concurrent_dispatches."
  type        = number
  default     = 250
}

variable "run_batch_concurrency" {
  description = "Requests one run_batch instance serves at once (4 on 2 vCPUs is what bench/e2e.py measured best for CPU-bound batches)."
  type        = number
  default     = 4
}

variable "build_service_account" {
  description = "Service account Cloud Build uses to build the functions, as projects/PROJECT/serviceAccounts/EMAIL. null: the project's default build service account."
  type        = string
  default     = null
}

# --- Cloud Tasks -------------------------------------------------------------

variable "max_concurrent_dispatches" {
  description = "Cloud Tasks: batches running at once (queue rate_limits.max_concurrent_dispatches, at most 5000)."
  type        = number
  default     = 1000

  validation {
    condition     = var.max_concurrent_dispatches >= 1 && var.max_concurrent_dispatches <= 5000
    error_message = "max_concurrent_dispatches must be between 1 and 5000."
  }
}

variable "max_attempts" {
  description = "Cloud Tasks: deliveries of one batch's task before it is dropped (queue retry_config.max_attempts, and FANOUT_MAX_ATTEMPTS for the sweeper)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_attempts >= 1 && floor(var.max_attempts) == var.max_attempts
    error_message = "max_attempts must be a whole number of at least 1 (FANOUT_MAX_ATTEMPTS refuses -1, unlimited)."
  }
}

variable "dispatch_deadline_seconds" {
  description = "Cloud Tasks: how long one delivery to run_batch may take before it counts as failed (FANOUT_DISPATCH_DEADLINE_SECONDS)."
  type        = number
  default     = 600

  # Cloud Tasks accepts 15 s to 30 min for HTTP tasks; the code refuses anything else at start-up.
  validation {
    condition     = var.dispatch_deadline_seconds >= 15 && var.dispatch_deadline_seconds <= 1800
    error_message = "dispatch_deadline_seconds must be between 15 and 1800."
  }
}

# --- Cloud Scheduler ---------------------------------------------------------

variable "cleanup_schedule" {
  description = "Cron schedule (UTC) of cleanup_jobs: sweep stuck work, delete expired jobs."
  type        = string
  default     = "*/10 * * * *"
}
