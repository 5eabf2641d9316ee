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
  description = "Max instances of run_batch. With run_batch_concurrency, it must cover the queue's max_concurrent_dispatches; times run_batch_cpu, it must fit run_batch_vcpu_quota (250 x 2 = 500 vCPUs by default)."
  type        = number
  default     = 250
}

variable "run_batch_concurrency" {
  description = "Requests one run_batch instance serves at once (4 on 2 vCPUs is what bench/e2e.py measured best for CPU-bound batches)."
  type        = number
  default     = 4
}

variable "run_batch_cpu" {
  description = "vCPUs of one run_batch instance (Cloud Run's available_cpu). Whole numbers only: run_batch_concurrency > 1 needs at least 1, and Cloud Run takes 1, 2, 4, 6 or 8."
  type        = string
  default     = "2"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.run_batch_cpu)
    error_message = "run_batch_cpu must be \"1\", \"2\", \"4\", \"6\" or \"8\"."
  }
}

variable "run_batch_memory" {
  description = "Memory of one run_batch instance, shared by its run_batch_concurrency batches: parsing, chunking, LanceDB writes and the end-of-job compaction. Cloud Run pairs it with the CPU: over 4Gi needs 2 vCPUs, over 8Gi 4."
  type        = string
  default     = "2Gi"

  validation {
    condition     = can(regex("^[1-9][0-9]*(Mi|Gi)$", var.run_batch_memory))
    error_message = "run_batch_memory must be a whole number of Mi or Gi, such as \"2Gi\" or \"1536Mi\"."
  }
}

variable "jobs_api_memory" {
  description = "Memory of one jobs_api instance. Search scans a collection's vectors until it has a vector index (at 100,000 chunks), which passes 256M (the functions' default) from about 20,000 chunks."
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[1-9][0-9]*(Mi|Gi)$", var.jobs_api_memory))
    error_message = "jobs_api_memory must be a whole number of Mi or Gi, such as \"1Gi\" or \"512Mi\"."
  }
}

variable "cleanup_jobs_memory" {
  description = "Memory of the cleanup_jobs instance. When the sweep finalizes a job it compacts the job's collection and may build its indexes, as run_batch does."
  type        = string
  default     = "2Gi"

  validation {
    condition     = can(regex("^[1-9][0-9]*(Mi|Gi)$", var.cleanup_jobs_memory))
    error_message = "cleanup_jobs_memory must be a whole number of Mi or Gi, such as \"2Gi\" or \"512Mi\"."
  }
}

variable "build_service_account" {
  description = "Service account Cloud Build builds the functions as, as projects/PROJECT/serviceAccounts/EMAIL; it needs roles/logging.logWriter, roles/artifactregistry.writer and roles/storage.objectAdmin. null: Terraform creates fanout-build with those roles (build.tf)."
  type        = string
  default     = null

  validation {
    condition     = var.build_service_account == null || can(regex("^projects/[^/]+/serviceAccounts/[^/]+@[^/]+$", var.build_service_account))
    error_message = "build_service_account must be projects/PROJECT/serviceAccounts/EMAIL (or null)."
  }
}

variable "run_batch_vcpu_quota" {
  description = "The project's Cloud Run vCPU quota in var.region (Quotas: Cloud Run Admin API, \"Total CPU allocation, per project per region\"). run_batch at full scale takes run_batch_max_instances * run_batch_cpu of it; the plan fails when that is more. Raise it here after Google raises the quota."
  type        = number
  default     = 500

  validation {
    condition     = var.run_batch_vcpu_quota >= 1
    error_message = "run_batch_vcpu_quota must be at least 1."
  }
}

# --- Ingestion ---------------------------------------------------------------

variable "source_buckets" {
  description = "Cloud Storage buckets (names, not gs:// URIs) requests may ingest from (FANOUT_ALLOWED_BUCKETS). The functions' account gets roles/storage.objectViewer on each. Empty allows no gs:// source."
  type        = list(string)
  default     = []

  # The rules functions/ingestion/sources/gs_uri.py checks a request's bucket against: a
  # name it would refuse could never be used. No commas either (the list is joined by them).
  validation {
    condition = alltrue([
      for bucket in var.source_buckets :
      can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", bucket)) && !strcontains(bucket, "..")
    ])
    error_message = "source_buckets must be bucket names (3-63 lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or digit), not gs:// URIs."
  }
}

variable "embedding_model" {
  description = "Vertex AI text embedding model (FANOUT_VERTEX_MODEL), called in var.region. A collection records its embedder and dimension, not the model (all three give 768): after a change, existing collections mix vectors of both models, so re-ingest them into new collections."
  type        = string
  default     = "text-embedding-005"

  # The models functions/ingestion/embedders/vertex.py knows (MODEL_DIMENSIONS); the code
  # refuses any other at the first request.
  validation {
    condition     = contains(["text-embedding-005", "text-embedding-004", "text-multilingual-embedding-002"], var.embedding_model)
    error_message = "embedding_model must be text-embedding-005, text-embedding-004 or text-multilingual-embedding-002."
  }
}

variable "max_file_bytes" {
  description = "A source file larger than this fails (that file only) without being read (FANOUT_MAX_FILE_BYTES). Default 32 MiB."
  type        = number
  default     = 33554432

  validation {
    condition     = var.max_file_bytes >= 1 && floor(var.max_file_bytes) == var.max_file_bytes
    error_message = "max_file_bytes must be a whole number of at least 1."
  }
}

# --- Cloud Tasks -------------------------------------------------------------

variable "max_concurrent_dispatches" {
  description = "Cloud Tasks: batches of normal jobs running at once (the fanout-batches queue's rate_limits.max_concurrent_dispatches, at most 5000). With the high and low queues' it must fit run_batch_max_instances * run_batch_concurrency (1000 by default: 700 normal, 200 high, 100 low)."
  type        = number
  default     = 700

  validation {
    condition     = var.max_concurrent_dispatches >= 1 && var.max_concurrent_dispatches <= 5000
    error_message = "max_concurrent_dispatches must be between 1 and 5000."
  }
}

variable "high_priority_queue" {
  description = "Cloud Tasks: the high class's queue (fanout-batches-high): dispatches per second (at most 500) and batches running at once, a share of run_batch's capacity kept for high jobs. The local dispatcher shares its slots in proportion to the classes' dispatch rates (functions/config.py PriorityShares keeps the defaults)."
  type = object({
    max_dispatches_per_second = number
    max_concurrent_dispatches = number
  })
  default = {
    max_dispatches_per_second = 500
    max_concurrent_dispatches = 200
  }

  validation {
    condition     = var.high_priority_queue.max_dispatches_per_second > 0 && var.high_priority_queue.max_dispatches_per_second <= 500 && var.high_priority_queue.max_concurrent_dispatches >= 1 && var.high_priority_queue.max_concurrent_dispatches <= 5000
    error_message = "high_priority_queue: max_dispatches_per_second must be above 0 and at most 500, max_concurrent_dispatches between 1 and 5000."
  }
}

variable "low_priority_queue" {
  description = "Cloud Tasks: the low class's queue (fanout-batches-low): dispatches per second (at most 500) and batches running at once. Above zero, so low jobs never starve."
  type = object({
    max_dispatches_per_second = number
    max_concurrent_dispatches = number
  })
  default = {
    max_dispatches_per_second = 100
    max_concurrent_dispatches = 100
  }

  validation {
    condition     = var.low_priority_queue.max_dispatches_per_second > 0 && var.low_priority_queue.max_dispatches_per_second <= 500 && var.low_priority_queue.max_concurrent_dispatches >= 1 && var.low_priority_queue.max_concurrent_dispatches <= 5000
    error_message = "low_priority_queue: max_dispatches_per_second must be above 0 and at most 500, max_concurrent_dispatches between 1 and 5000."
  }
}

variable "max_attempts" {
  description = "Cloud Tasks: deliveries of one batch's task before it is dropped (queue retry_config.max_attempts, and FANOUT_MAX_ATTEMPTS for the sweeper). 10, with backoffs from 1 s to 60 s, spans about 4 minutes."
  type        = number
  default     = 10

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

# --- Alerts ------------------------------------------------------------------

variable "notification_channels" {
  description = "Cloud Monitoring notification channels (projects/PROJECT/notificationChannels/ID) the alerts of monitoring.tf notify. Empty: the alerts open incidents in the console and notify no one."
  type        = list(string)
  default     = []
}

variable "log_level" {
  description = "Lowest level the functions log: INFO (every lifecycle event) or WARNING."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING"], var.log_level)
    error_message = "log_level must be DEBUG, INFO or WARNING."
  }
}
