# Alerts on the lifecycle events the functions log (functions/observability/events.py): each is
# one JSON line on stdout with an `event` field, which Cloud Logging keeps as jsonPayload of a
# cloud_run_revision entry. A log-based metric counts the matching lines; an alert policy opens
# an incident when one appears. docs/operations.md says what to do about each.

locals {
  # Lines of Fanout's own services only.
  fanout_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"^${local.service_prefix}\""

  alerts = {
    # Finalized as failed (status "failed"), or failed before it was planned: the sweeper's
    # job_finalized line for those has no status field and is logged at ERROR.
    job_failed = {
      title  = "Fanout: jobs failed"
      filter = "jsonPayload.event=\"job_finalized\" AND (jsonPayload.status=\"failed\" OR severity>=ERROR)"
      doc    = "A job ended failed. `fanout show JOB` lists its failed batches and items; retry it with `fanout retry JOB` once the cause is fixed."
    }
    # A batch_failed line is written once, when a batch ends failed for good (a retryable
    # failure with attempts left logs batch_retried instead).
    batch_failed = {
      title  = "Fanout: batches failed"
      filter = "jsonPayload.event=\"batch_failed\""
      doc    = "A batch failed for good: every attempt failed, or an item could not be processed. Its `error` and `logs_url` say why."
    }
    # No field of its own: the sweeper fails such a batch with this error text
    # (JobService._fail_dropped in functions/service.py; tests/infra pins the text).
    dispatch_rounds_exhausted = {
      title  = "Fanout: run_batch unreachable (dispatch rounds exhausted)"
      filter = "jsonPayload.event=\"batch_failed\" AND jsonPayload.error:\"the worker could not be reached\""
      doc    = "Cloud Tasks dropped every task of a batch, round after round: run_batch could not be reached (deleted, failing to start, or refusing the queue's token). Fix it, then retry the job."
    }
    # Undelivered for good: a callback_failed line without the "the sweeper sends it again"
    # its message carries while the callback is still owed (attempts used up, or a refusal
    # such as a 4xx that is never retried).
    callback_undelivered = {
      title  = "Fanout: callbacks undelivered"
      filter = "jsonPayload.event=\"callback_failed\" AND NOT jsonPayload.message:\"the sweeper sends it again\""
      doc    = "A job's callback will not be sent again. The receiver's URL and answer are in the line (`callback`, `outcome`); the job itself is unaffected."
    }
  }
}

resource "google_logging_metric" "alerts" {
  for_each = local.alerts

  name        = "fanout_${each.key}"
  description = each.value.title
  filter      = "${local.fanout_logs} AND ${each.value.filter}"
  # A count of matching lines (DELTA, INT64).
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }

  depends_on = [google_project_service.apis]
}

# Monitoring may answer 404 "Cannot find metric(s)" for a few minutes after a log-based metric
# is created (hashicorp/terraform-provider-google#11102). If it still does, apply again.
resource "time_sleep" "log_metrics_visible" {
  create_duration = "90s"
  triggers        = { for name, metric in google_logging_metric.alerts : name => metric.id }
}

resource "google_monitoring_alert_policy" "alerts" {
  for_each = local.alerts

  display_name          = each.value.title
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "${each.value.title}: at least one in 5 minutes"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.alerts[each.key].name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    content   = "${each.value.doc} Runbook: docs/operations.md in the Fanout repository."
    mime_type = "text/markdown"
  }

  depends_on = [time_sleep.log_metrics_visible]
}
