# The Pub/Sub entry: publish an IngestRequest (JSON) to fanout-ingest, and a push subscription
# Terraform owns delivers it to ingest_pubsub, with retries and a dead-letter topic.
#
#   fanout-ingest              topic                     publishers write here
#   fanout-ingest-push         push subscription         -> ingest_pubsub, OIDC as fanout-pubsub-invoker
#   fanout-ingest-dead-letter  topic + pull subscription messages refused 5 times, kept 7 days
#
# A subscription rather than an Eventarc trigger: an event_trigger's subscription is
# Eventarc's, with no dead-letter setting Terraform can own. ingest_pubsub keeps its
# @functions_framework.cloud_event code: functions-framework turns a raw push body into the
# same messagePublished CloudEvent. The local stack (functions/local/) creates the same names
# on the Pub/Sub emulator.

locals {
  # Pub/Sub's service agent: it writes dead letters, acks the source message, and signs the
  # push's OIDC token.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  # Messages the dead-letter subscription keeps for operators (Pub/Sub's maximum, 7 days).
  dead_letter_retention = "604800s"
}

resource "google_pubsub_topic" "ingest" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; Fanout manages no Cloud KMS key, and a request holds no secret (callback secrets live in Secret Manager).
  name = "fanout-ingest"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "ingest_dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption; Fanout manages no Cloud KMS key, and it holds the same requests as fanout-ingest.
  name = "fanout-ingest-dead-letter"

  depends_on = [google_project_service.apis]
}

# The push signs each delivery's OIDC token as this account, which may invoke ingest_pubsub
# and nothing else.
resource "google_service_account" "pubsub_invoker" {
  account_id   = "fanout-pubsub-invoker"
  display_name = "Fanout: Pub/Sub push -> ingest_pubsub"

  depends_on = [google_project_service.apis]
}

resource "google_cloud_run_service_iam_member" "ingest_pubsub_trigger" {
  project  = var.project_id
  location = google_cloudfunctions2_function.ingest_pubsub.location
  service  = google_cloudfunctions2_function.ingest_pubsub.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pubsub_invoker.email}"
}

resource "google_pubsub_subscription" "ingest_push" {
  name  = "fanout-ingest-push"
  topic = google_pubsub_topic.ingest.id

  # A push waits this long for the function's answer: as long as the function may run.
  ack_deadline_seconds = google_cloudfunctions2_function.ingest_pubsub.service_config[0].timeout_seconds

  push_config {
    push_endpoint = google_cloudfunctions2_function.ingest_pubsub.service_config[0].uri
    oidc_token {
      service_account_email = google_service_account.pubsub_invoker.email
      audience              = google_cloudfunctions2_function.ingest_pubsub.service_config[0].uri
    }
  }

  # The function acks bad input itself (logs and returns 200), so only transient failures are
  # retried, and submit is idempotent on (client_id, request_id).
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  # After 5 deliveries a message goes to the dead-letter topic instead of being retried for the
  # subscription's whole retention.
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.ingest_dead_letter.id
    max_delivery_attempts = 5
  }

  # The default expires a subscription after 31 days without deliveries: never.
  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_cloud_run_service_iam_member.ingest_pubsub_trigger,
    # Dead-lettering needs both grants in place before the first message can fail.
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_service_account_iam_member.pubsub_agent_token_creator,
  ]
}

# Dead letters are lost unless a subscription exists on their topic: this one keeps them for
# operators (gcloud pubsub subscriptions pull fanout-ingest-dead-letter).
resource "google_pubsub_subscription" "ingest_dead_letter" {
  name                       = "fanout-ingest-dead-letter"
  topic                      = google_pubsub_topic.ingest_dead_letter.id
  message_retention_duration = local.dead_letter_retention
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = ""
  }
}

# -- the Pub/Sub service agent's grants -------------------------------------------------------

# It publishes dead letters to this topic...
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.ingest_dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

# ...and acks the original on the push subscription once it has forwarded it.
resource "google_pubsub_subscription_iam_member" "push_subscriber" {
  subscription = google_pubsub_subscription.ingest_push.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# Projects created before 2021-04-08 need this for the agent to mint the push's OIDC token;
# newer ones have it already, and the grant is harmless there.
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.pubsub_invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}
