# Builds: the account Cloud Build builds the functions as, and the registry of the CI image.

# Projects made after July 2024 give the default build account too few permissions to build a
# function, so Terraform makes one with what a function build needs, unless
# var.build_service_account names another.
resource "google_service_account" "build" {
  count = var.build_service_account == null ? 1 : 0

  account_id   = "fanout-build"
  display_name = "Fanout: Cloud Build -> the five functions' images"

  depends_on = [google_project_service.apis]
}

# The roles Google documents for a function's custom build account: build logs, the images in
# Artifact Registry, and the source Cloud Functions copies into its own gcf-v2-sources bucket
# (which Terraform does not manage, hence project-wide).
resource "google_project_iam_member" "build" {
  for_each = var.build_service_account == null ? toset([
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
    "roles/storage.objectAdmin",
  ]) : toset([])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.build[0].email}"
}

locals {
  # projects/PROJECT/serviceAccounts/EMAIL, as build_config.service_account takes it.
  build_service_account = (
    var.build_service_account != null ? var.build_service_account : google_service_account.build[0].name
  )
}

# The image the test step of cloudbuild.yaml runs on (infra/ci-image/Dockerfile), built by
# cloudbuild-ci-image.yaml: REGION-docker.pkg.dev/PROJECT/fanout/ci.
resource "google_artifact_registry_repository" "fanout" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption; it holds a CI image built from this public Dockerfile, and Fanout manages no Cloud KMS key.
  location      = var.region
  repository_id = "fanout"
  format        = "DOCKER"
  description   = "Fanout: the CI image cloudbuild.yaml tests on."

  depends_on = [google_project_service.apis]
}
