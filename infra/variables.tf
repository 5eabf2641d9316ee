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
