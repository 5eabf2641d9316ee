terraform {
  required_version = ">= 1.5"

  # State lives in a GCS bucket: `terraform init -backend-config="bucket=NAME"`.
  backend "gcs" {
    prefix = "fanout"
  }

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    # Zips the function source. 2.5 added glob patterns in `excludes` (functions.tf uses them).
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.5"
    }
    # Generates the callback signing secret (callbacks.tf).
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    # Waits for new log-based metrics to be visible before alerting on them (monitoring.tf).
    time = {
      source  = "hashicorp/time"
      version = "~> 0.12"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
