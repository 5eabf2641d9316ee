# The secret every callback is signed with (the Fanout-Signature header,
# functions/signing.py). Terraform generates it and keeps it in Secret Manager; the five
# functions read it as FANOUT_CALLBACK_SECRET (functions.tf), pinned to this version, so a
# new version (rotate: terraform apply -replace=random_password.callback_secret) redeploys
# them. Receivers get it with:
#   gcloud secrets versions access latest --secret fanout-callback-secret
# Like every generated secret, it is also in the Terraform state (a private bucket).
resource "random_password" "callback_secret" {
  length  = 48
  special = false # safe to paste into any receiver's configuration
}

resource "google_secret_manager_secret" "callback" {
  project   = var.project_id
  secret_id = "fanout-callback-secret"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "callback" {
  secret      = google_secret_manager_secret.callback.id
  secret_data = random_password.callback_secret.result

  # On rotation the new version exists, and the functions pin it, before the old one is
  # destroyed: an instance starting meanwhile still finds the version it was deployed with.
  lifecycle {
    create_before_destroy = true
  }
}

# The functions' account may read this secret, and no other.
resource "google_secret_manager_secret_iam_member" "functions_callback_secret" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.callback.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.functions.email}"
}
