"""Static checks of the alerts (infra/monitoring.tf): log-based metrics built from the lifecycle
events the code logs (functions/observability/events.py), and an alert policy on each. The
filters name fields and texts; these tests read the code's side to prove it still logs them."""

from __future__ import annotations

import ast
import re

import pytest

from functions.observability.events import Event
from tests.infra.terraform_config import (
    REPO_DIR,
    Config,
    labelled,
    load_config,
    locals_,
    resources,
)

ALERTS = ("job_failed", "batch_failed", "dispatch_rounds_exhausted", "callback_undelivered")


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config()


@pytest.fixture(scope="module")
def filters(config: Config) -> dict[str, str]:
    return {name: alert["filter"] for name, alert in locals_(config)["alerts"].items()}


def _service_source(function: str) -> str:
    """The source of one method of JobService (functions/service.py)."""
    tree = ast.parse((REPO_DIR / "functions" / "service.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return ast.unparse(node)
    raise AssertionError(f"functions/service.py has no {function}()")


def test_one_metric_and_alert_per_failure_kind(config: Config, filters: dict[str, str]) -> None:
    """Failed jobs, failed batches, exhausted dispatch rounds and undelivered callbacks each
    have a log-based metric on Fanout's Cloud Run logs and an alert policy on that metric."""
    assert set(filters) == set(ALERTS)
    metric = resources(config, "google_logging_metric")["alerts"]
    assert metric["for_each"] == "${local.alerts}"
    assert metric["filter"] == "${local.fanout_logs} AND ${each.value.filter}"
    assert 'resource.type="cloud_run_revision"' in locals_(config)["fanout_logs"]
    assert "${local.service_prefix}" in locals_(config)["fanout_logs"]
    policy = resources(config, "google_monitoring_alert_policy")["alerts"]
    assert policy["for_each"] == "${local.alerts}"
    (condition,) = policy["conditions"][0]["condition_threshold"]
    assert "google_logging_metric.alerts[each.key].name" in condition["filter"]
    assert condition["comparison"] == "COMPARISON_GT"
    assert condition["threshold_value"] == 0


def test_filters_name_events_the_code_logs(filters: dict[str, str]) -> None:
    """Each filter's jsonPayload.event is one of the code's lifecycle events."""
    for name, text in filters.items():
        events = re.findall(r'jsonPayload\.event="(\w+)"', text)
        assert events, name
        assert set(events) <= {event.value for event in Event}, name


def test_job_failed_catches_both_ways_a_job_fails(filters: dict[str, str]) -> None:
    """A finalized job logs status="failed" (at WARNING); one that never got planned is failed
    by the sweeper with a job_finalized line that has no status but is logged at ERROR."""
    text = filters["job_failed"]
    assert 'jsonPayload.status="failed"' in text
    assert "severity>=ERROR" in text
    after_finish = _service_source("_after_finish")
    assert "status=job.status.value" in after_finish
    unplanned = _service_source("_fail_unplanned_jobs")
    assert "Event.JOB_FINALIZED" in unplanned
    assert "level=logging.ERROR" in unplanned


def test_dispatch_rounds_exhausted_matches_the_sweepers_error(filters: dict[str, str]) -> None:
    """The batch the sweeper fails after its last dispatch round carries this error text (the
    code logs no field of its own for it): the filter's text is the code's."""
    (phrase,) = re.findall(r'jsonPayload\.error:"([^"]+)"', filters["dispatch_rounds_exhausted"])
    assert phrase in _service_source("_fail_dropped")


def test_callback_undelivered_excludes_callbacks_still_owed(filters: dict[str, str]) -> None:
    """A callback_failed line whose message does not promise another sweep is a callback that
    will never be sent again: the phrase is the one the code appends while one is owed."""
    (phrase,) = re.findall(r'NOT jsonPayload\.message:"([^"]+)"', filters["callback_undelivered"])
    source = _service_source("_deliver_callback")
    assert re.search(rf"""['"]; {re.escape(phrase)}['"] if owed""", source), source


def test_alerts_notify_the_configured_channels(config: Config) -> None:
    """notification_channels (default: none) is where every alert goes."""
    variable = labelled(config, "variable")["notification_channels"]
    assert variable["default"] == []
    assert variable["type"] == "${list(string)}"
    policy = resources(config, "google_monitoring_alert_policy")["alerts"]
    assert policy["notification_channels"] == "${var.notification_channels}"


def test_alerts_wait_for_their_metrics(config: Config) -> None:
    """The policies are created after a pause that follows the metrics (Monitoring answers 404
    for a new log-based metric for a while), and the Monitoring API is enabled."""
    policy = resources(config, "google_monitoring_alert_policy")["alerts"]
    assert policy["depends_on"] == ["${time_sleep.log_metrics_visible}"]
    sleep = resources(config, "time_sleep")["log_metrics_visible"]
    assert "google_logging_metric.alerts" in sleep["triggers"]
    assert "monitoring.googleapis.com" in repr(locals_(config)["services"])
