# The five Cloud Run functions (2nd gen) of main.py, their source, identities and access.
#
#   ingest         HTTP      submit a job (IAM: var.api_invokers)
#   ingest_pubsub  Pub/Sub   submit a job from a message on the fanout-ingest topic (pubsub.tf)
#   run_batch      HTTP      Cloud Tasks target, one batch per call (IAM: tasks invoker only)
#   jobs_api       HTTP      the jobs REST API and pages (IAM: var.api_invokers)
#   cleanup_jobs   HTTP      called by Cloud Scheduler (IAM: scheduler account only)
#
# Ingress: the three that only Google's services call (Cloud Tasks, Cloud Scheduler, Pub/Sub
# push, all in this project, which Cloud Run counts as internal) take internal traffic only;
# ingest and jobs_api take requests from people's machines, so they allow all and rely on IAM.
#
# Five explicit resources rather than one for_each: their environments refer to each
# other's URLs (ingest -> jobs_api, everyone that enqueues -> run_batch), and an instance of
# a for_each resource cannot refer to another instance of the same resource.

# ---------------------------------------------------------------------------
# Source: main.py, requirements.txt and functions/, zipped. Everything else at the top of
# the repository is excluded by name (directories are skipped whole), and so are caches.
# requirements-local.txt is the local embedding model (onnxruntime and the model package):
# Cloud Functions installs requirements.txt only, and the deployed functions embed with
# Vertex AI, so it stays out rather than lying unused in the source.
# tests/infra/test_terraform_functions.py checks that every top-level entry (tracked, new, or
# an ignored build output such as .venv or fanout.egg-info) is either shipped or excluded here.
# ---------------------------------------------------------------------------
data "archive_file" "source" {
  type        = "zip"
  source_dir  = "${path.module}/.."
  output_path = "${path.module}/.terraform/fanout-source.zip" # under infra/, itself excluded
  # Fixed modes (timestamps are already zeroed): the same tree gives the same md5 on every
  # machine, so an unchanged source does not redeploy.
  output_file_mode = "0644"

  excludes = [
    ".ci",
    ".git",
    ".gitignore",
    ".hypothesis", # schemathesis' example database (tests/web)
    ".local",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".uv", # the uv that builds the venvs (Makefile)
    ".venv",
    ".venv-checkov",
    ".venv-tasks-emulator",
    "Makefile",
    "README.md",
    "bench",
    "cloudbuild-ci-image.yaml",
    "cloudbuild.yaml",
    "docs",
    # Development tooling (the local stack, emulators) and the `fanout` command: the deployed
    # functions never import them (tests/infra/test_deployed_source.py).
    "functions/cli",
    "functions/local",
    "infra",
    "node_modules",
    "package-lock.json",
    "package.json",
    "pyproject.toml",
    "requirements-dev.txt",
    "requirements-local.txt",
    "samples",
    "tests",
    "**/__pycache__",
    "**/*.pyc",
    # `pip install -e .` leaves fanout.egg-info/ (gitignored): machine-dependent, so it would
    # change the md5 and redeploy everything from a machine that has it.
    "*.egg-info",
    "**/*.egg-info",
  ]
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Build inputs only, uploaded by Terraform and read by Cloud Build; nothing to audit per object.
  #checkov:skip=CKV_GCP_78:Each object is named by its md5 and never overwritten, so versions would keep nothing more.
  name                        = "${var.project_id}-fanout-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Holds only build inputs, which can be uploaded again: destroy may empty it.
  force_destroy = true

  depends_on = [google_project_service.apis]
}

# Named by its md5: a changed source is a new object name, which rebuilds every function.
resource "google_storage_bucket_object" "source" {
  name   = "fanout-source-${data.archive_file.source.output_md5}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

# ---------------------------------------------------------------------------
# Runtime identity shared by the five functions.
# ---------------------------------------------------------------------------
resource "google_service_account" "functions" {
  account_id   = "fanout-functions"
  display_name = "Fanout: functions runtime"

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "functions" {
  for_each = toset([
    "roles/datastore.user",    # Firestore reads and writes
    "roles/logging.logWriter", # structured logs
    "roles/logging.viewer",    # GET /jobs/{id}/logs reads a job's lines back
    # Vertex AI embeddings (aiplatform.endpoints.predict on the publisher model). Project
    # level: publisher models have no IAM policy of their own to grant on.
    "roles/aiplatform.user",
  ])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.functions.email}"
}

# Create tasks, on the queues of Fanout only (this one is the normal class's).
resource "google_cloud_tasks_queue_iam_member" "functions_enqueuer" {
  project  = var.project_id
  location = google_cloud_tasks_queue.batches.location
  name     = google_cloud_tasks_queue.batches.name
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${google_service_account.functions.email}"
}

# Read tasks, on this queue only: the sweeper asks whether a batch's task still exists
# (GetTask answers NOT_FOUND once the task used up its attempts) before re-dispatching it.
resource "google_cloud_tasks_queue_iam_member" "functions_viewer" {
  project  = var.project_id
  location = google_cloud_tasks_queue.batches.location
  name     = google_cloud_tasks_queue.batches.name
  role     = "roles/cloudtasks.viewer"
  member   = "serviceAccount:${google_service_account.functions.email}"
}

# The same two roles on the high and low classes' queues.
locals {
  class_queue_roles = {
    for pair in setproduct(["high", "low"], ["roles/cloudtasks.enqueuer", "roles/cloudtasks.viewer"]) :
    "${pair[0]} ${pair[1]}" => { class = pair[0], role = pair[1] }
  }
}

resource "google_cloud_tasks_queue_iam_member" "functions_class_queues" {
  for_each = local.class_queue_roles

  project  = var.project_id
  location = var.region
  name     = each.value.class == "high" ? google_cloud_tasks_queue.batches_high.name : google_cloud_tasks_queue.batches_low.name
  role     = each.value.role
  member   = "serviceAccount:${google_service_account.functions.email}"
}

# A task that carries an OIDC token as the tasks invoker can only be created by a caller
# allowed to act as that account (iam.serviceAccounts.actAs).
resource "google_service_account_iam_member" "functions_act_as_tasks_invoker" {
  service_account_id = google_service_account.tasks_invoker.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.functions.email}"
}

# ---------------------------------------------------------------------------
# Environment (functions/config.py reads it; every variable is FANOUT_*).
# ---------------------------------------------------------------------------
locals {
  runtime = "python311"
  # Each function is named this prefix + its entry point in kebab-case; the code derives
  # the Cloud Run service names of its logs links from it (FANOUT_SERVICE_PREFIX).
  service_prefix = "fanout-"

  # What every function needs, run_batch included.
  function_env = {
    FANOUT_STORE                     = "firestore"
    FANOUT_QUEUE                     = "cloud_tasks"
    FANOUT_GCP_PROJECT               = var.project_id
    FANOUT_FIRESTORE_DATABASE        = google_firestore_database.main.name
    FANOUT_TASKS_PROJECT             = var.project_id
    FANOUT_TASKS_LOCATION            = google_cloud_tasks_queue.batches.location
    FANOUT_TASKS_QUEUE               = google_cloud_tasks_queue.batches.name
    FANOUT_TASKS_QUEUE_HIGH          = google_cloud_tasks_queue.batches_high.name
    FANOUT_TASKS_QUEUE_LOW           = google_cloud_tasks_queue.batches_low.name
    FANOUT_TASKS_SERVICE_ACCOUNT     = google_service_account.tasks_invoker.email
    FANOUT_RETENTION_DAYS            = tostring(var.retention_days)
    FANOUT_DISPATCH_DEADLINE_SECONDS = tostring(var.dispatch_deadline_seconds)
    # The sweeper fails a batch after this many attempts: the queue's own limit.
    FANOUT_MAX_ATTEMPTS = tostring(google_cloud_tasks_queue.batches.retry_config[0].max_attempts)
    # With these and the deadline, the sweeper knows how long the queue may keep a task
    # alive before it takes the task for dropped (its retry window). The numbers the queue is
    # configured from (queue.tf), not its state, which reads "0.1s" back as "0.100s".
    FANOUT_MIN_BACKOFF_SECONDS = tostring(local.tasks_backoff_seconds.min)
    FANOUT_MAX_BACKOFF_SECONDS = tostring(local.tasks_backoff_seconds.max)
    # An empty value leaves the code's default (see var.allowed_roots).
    FANOUT_ALLOWED_ROOTS = join(":", var.allowed_roots)

    # Ingestion (the documents processor; ingestion.tf has the buckets and their IAM).
    # Requests that name no embedder get Vertex AI: the local model is never deployed
    # (requirements-local.txt). Search embeds a query with its collection's own embedder,
    # so jobs_api needs the Vertex settings too.
    FANOUT_EMBEDDER        = "vertex"
    FANOUT_VERTEX_MODEL    = var.embedding_model
    FANOUT_VERTEX_LOCATION = var.region # the endpoint next to the functions
    FANOUT_LANCEDB_URI     = local.lancedb_uri
    # The buckets the account may read (ingestion.tf) are exactly the ones requests may
    # name: empty allows no gs:// source.
    FANOUT_ALLOWED_BUCKETS = join(",", var.source_buckets)
    FANOUT_MAX_FILE_BYTES  = tostring(var.max_file_bytes)

    # Observability: structured logs on stdout (Cloud Logging); links name the services.
    FANOUT_SERVICE_PREFIX = local.service_prefix
    FANOUT_LOG_LEVEL      = var.log_level
  }

  # Where tasks go, for the functions that enqueue (ingest, ingest_pubsub, jobs_api's retry,
  # cleanup_jobs' sweep). run_batch cannot know its own URL before it exists (a cycle), so it
  # does not get these: when it plans a manifest's page, the planner task it runs carries the
  # URL its page's tasks go to, which ingest (or the sweep) put there (functions/planner.py).
  run_batch_uri = google_cloudfunctions2_function.run_batch.service_config[0].uri
  enqueue_env = {
    FANOUT_WORKER_URL     = local.run_batch_uri
    FANOUT_TASKS_AUDIENCE = local.run_batch_uri
  }

  # The status_url in ingest's 202 reply points at jobs_api.
  ingest_env = {
    FANOUT_API_URL = google_cloudfunctions2_function.jobs_api.service_config[0].uri
  }
}

# ---------------------------------------------------------------------------
# The functions. Function names are kebab-case: a 2nd-gen function's Cloud Run service takes
# its name, and IAM grants (google_cloud_run_service_iam_member) address that service.
# ---------------------------------------------------------------------------
resource "google_cloudfunctions2_function" "run_batch" {
  name        = "${local.service_prefix}run-batch"
  location    = var.region
  description = "Fanout: run one batch (Cloud Tasks target). Private."

  build_config {
    runtime         = local.runtime
    entry_point     = "run_batch"
    service_account = local.build_service_account
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    # Only Cloud Tasks in this project calls it: Cloud Run counts that as internal traffic.
    ingress_settings = "ALLOW_INTERNAL_ONLY"
    # HTTP functions may run up to 60 min. Cloud Tasks stops waiting after the dispatch
    # deadline (var.dispatch_deadline_seconds, at most 30 min) and retries; the lease keeps
    # a retry from running the batch twice.
    timeout_seconds = 3600
    # run_batch does the ingestion work: parse, chunk, write LanceDB, and (in the batch
    # that finishes a job) compact the collection and build its indexes. It serves
    # run_batch_concurrency batches at once (concurrency > 1 needs >= 1 vCPU).
    available_cpu                    = var.run_batch_cpu
    available_memory                 = var.run_batch_memory
    max_instance_count               = var.run_batch_max_instances
    max_instance_request_concurrency = var.run_batch_concurrency
    service_account_email            = google_service_account.functions.email
    environment_variables            = local.function_env

    # The callback signing secret (callbacks.tf), from Secret Manager.
    secret_environment_variables {
      key        = "FANOUT_CALLBACK_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.callback.secret_id
      version    = google_secret_manager_secret_version.callback.version
    }
  }

  lifecycle {
    # Cloud Run refuses to deploy more instances than the region's CPU quota holds.
    precondition {
      condition     = var.run_batch_max_instances * tonumber(var.run_batch_cpu) <= var.run_batch_vcpu_quota
      error_message = "run_batch_max_instances * run_batch_cpu exceeds run_batch_vcpu_quota (the project's Cloud Run vCPU quota in the region): lower run_batch_max_instances, or raise the quota and then run_batch_vcpu_quota."
    }
  }

  depends_on = [
    google_project_service.apis,
    # The account must be able to read the secret before a function that uses it deploys.
    google_secret_manager_secret_iam_member.functions_callback_secret,
  ]
}

resource "google_cloudfunctions2_function" "jobs_api" {
  name        = "${local.service_prefix}jobs-api"
  location    = var.region
  description = "Fanout: jobs REST API and pages."

  build_config {
    runtime         = local.runtime
    entry_point     = "jobs_api"
    service_account = local.build_service_account
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    # People's CLIs and browsers call it from outside Google: IAM (var.api_invokers) guards it.
    #checkov:skip=CKV_GCP_124:Called from the internet by design; roles/run.invoker (var.api_invokers) decides who.
    ingress_settings = "ALLOW_ALL"
    timeout_seconds  = 60
    # Search reads the collection from Cloud Storage: until a collection has a vector index
    # (VECTOR_INDEX_MIN_ROWS in functions/ingestion/sink.py) a query scans every vector,
    # which passes the default 256M from about 20,000 chunks.
    available_memory      = var.jobs_api_memory
    service_account_email = google_service_account.functions.email
    environment_variables = merge(local.function_env, local.enqueue_env)

    # The callback signing secret (callbacks.tf), from Secret Manager.
    secret_environment_variables {
      key        = "FANOUT_CALLBACK_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.callback.secret_id
      version    = google_secret_manager_secret_version.callback.version
    }
  }

  depends_on = [
    google_project_service.apis,
    # The account must be able to read the secret before a function that uses it deploys.
    google_secret_manager_secret_iam_member.functions_callback_secret,
  ]
}

resource "google_cloudfunctions2_function" "ingest" {
  name        = "${local.service_prefix}ingest"
  location    = var.region
  description = "Fanout: submit an ingestion job over HTTPS."

  build_config {
    runtime         = local.runtime
    entry_point     = "ingest"
    service_account = local.build_service_account
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    # People's CLIs and browsers call it from outside Google: IAM (var.api_invokers) guards it.
    #checkov:skip=CKV_GCP_124:Called from the internet by design; roles/run.invoker (var.api_invokers) decides who.
    ingress_settings      = "ALLOW_ALL"
    timeout_seconds       = 60
    service_account_email = google_service_account.functions.email
    environment_variables = merge(local.function_env, local.enqueue_env, local.ingest_env)

    # The callback signing secret (callbacks.tf), from Secret Manager.
    secret_environment_variables {
      key        = "FANOUT_CALLBACK_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.callback.secret_id
      version    = google_secret_manager_secret_version.callback.version
    }
  }

  depends_on = [
    google_project_service.apis,
    # The account must be able to read the secret before a function that uses it deploys.
    google_secret_manager_secret_iam_member.functions_callback_secret,
  ]
}

resource "google_cloudfunctions2_function" "ingest_pubsub" {
  name        = "${local.service_prefix}ingest-pubsub"
  location    = var.region
  description = "Fanout: submit an ingestion job from a Pub/Sub message."

  build_config {
    runtime         = local.runtime
    entry_point     = "ingest_pubsub"
    service_account = local.build_service_account
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    # Only Pub/Sub (the push subscription in pubsub.tf) in this project calls it: Cloud Run counts that as internal traffic.
    ingress_settings      = "ALLOW_INTERNAL_ONLY"
    timeout_seconds       = 60
    service_account_email = google_service_account.functions.email
    environment_variables = merge(local.function_env, local.enqueue_env)

    # The callback signing secret (callbacks.tf), from Secret Manager.
    secret_environment_variables {
      key        = "FANOUT_CALLBACK_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.callback.secret_id
      version    = google_secret_manager_secret_version.callback.version
    }
  }

  depends_on = [
    google_project_service.apis,
    # The account must be able to read the secret before a function that uses it deploys.
    google_secret_manager_secret_iam_member.functions_callback_secret,
  ]
}

resource "google_cloudfunctions2_function" "cleanup_jobs" {
  name        = "${local.service_prefix}cleanup-jobs"
  location    = var.region
  description = "Fanout: sweep stuck work, delete expired jobs (Cloud Scheduler)."

  build_config {
    runtime         = local.runtime
    entry_point     = "cleanup_jobs"
    service_account = local.build_service_account
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    # Only Cloud Scheduler in this project calls it: Cloud Run counts that as internal traffic.
    ingress_settings = "ALLOW_INTERNAL_ONLY"
    timeout_seconds  = 540
    # The sweep finalizes jobs whose last batch run_batch did not finalize, and then runs
    # the processor's end-of-job step here: compacting a collection and building its
    # indexes, the same work run_batch has its memory for.
    available_memory      = var.cleanup_jobs_memory
    service_account_email = google_service_account.functions.email
    environment_variables = merge(local.function_env, local.enqueue_env)

    # The callback signing secret (callbacks.tf), from Secret Manager.
    secret_environment_variables {
      key        = "FANOUT_CALLBACK_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.callback.secret_id
      version    = google_secret_manager_secret_version.callback.version
    }
  }

  depends_on = [
    google_project_service.apis,
    # The account must be able to read the secret before a function that uses it deploys.
    google_secret_manager_secret_iam_member.functions_callback_secret,
  ]
}

# ---------------------------------------------------------------------------
# Callers of the public API: var.api_invokers only (default: nobody). Never allUsers here.
# ---------------------------------------------------------------------------
resource "google_cloud_run_service_iam_member" "ingest_invokers" {
  for_each = toset(var.api_invokers)

  project  = var.project_id
  location = google_cloudfunctions2_function.ingest.location
  service  = google_cloudfunctions2_function.ingest.name
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_cloud_run_service_iam_member" "jobs_api_invokers" {
  for_each = toset(var.api_invokers)

  project  = var.project_id
  location = google_cloudfunctions2_function.jobs_api.location
  service  = google_cloudfunctions2_function.jobs_api.name
  role     = "roles/run.invoker"
  member   = each.value
}
