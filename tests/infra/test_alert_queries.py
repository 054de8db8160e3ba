"""The alert rules in infra/app/alerts.bicep match the log lines the app really writes.

The rules' regular expressions and phrases are read from the template and applied to messages the app's
own code produces (SyncRun.summary, ReconsentRequired, an AuthenticationError of a 401), so a change of
wording in the code that would silence an alert fails here. KQL's `matches regex` uses RE2; the
patterns used there are in the subset Python's `re` reads the same way.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from shared.errors import AuthenticationError, ReconsentRequired
from shared.sync.jobs import JOBS
from shared.sync.runs import SyncRun
from shared.tables import RunStatus

ALERTS = (Path(__file__).resolve().parents[2] / "infra" / "app" / "alerts.bicep").read_text(encoding="utf-8")


def kql_regexes() -> list[str]:
    return re.findall(r'matches regex @"([^"]+)"', ALERTS)


def kql_phrases(variable: str) -> list[str]:
    """The `message has "..."` phrases of one query variable of the template."""
    block = ALERTS.split(f"var {variable} = ", 1)[1].split("'''", 2)[1]
    return re.findall(r'message has "([^"]+)"', block)


class _NoStore:
    def upsert_one(self, table: str, row: dict[str, object]) -> None:
        pass


def summary_line(status: RunStatus) -> str:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    run = SyncRun(_NoStore(), "fetch_utilization", unit="subscriptions", now=lambda: start + timedelta(seconds=3))  # type: ignore[arg-type]
    run.started_at = start
    run.status = status
    return run.summary()


def test_the_default_watched_functions_are_the_registered_timers() -> None:
    listed = re.search(r"param timerFunctions array = \[(.*?)\]", ALERTS, re.S)
    assert listed is not None
    assert re.findall(r"'(\w+)'", listed.group(1)) == [job.name for job in JOBS]


@pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.STALLED])
def test_the_failed_runs_rule_matches_a_failed_or_stalled_summary(status: RunStatus) -> None:
    failed_pattern = next(p for p in kql_regexes() if "failed|stalled" in p)
    line = summary_line(status)

    assert re.search(failed_pattern, line), line
    assert re.search(r"^(\w+) ", line).group(1) == "fetch_utilization"  # type: ignore[union-attr]


def test_the_failed_runs_rule_ignores_a_successful_summary() -> None:
    failed_pattern = next(p for p in kql_regexes() if "failed|stalled" in p)
    assert not re.search(failed_pattern, summary_line(RunStatus.SUCCEEDED))


def test_the_stale_rule_counts_a_successful_summary() -> None:
    success_pattern = next(p for p in kql_regexes() if "succeeded" in p)
    assert re.search(success_pattern, summary_line(RunStatus.SUCCEEDED))
    assert not re.search(success_pattern, summary_line(RunStatus.FAILED))


def test_the_reconsent_rule_matches_what_a_dead_refresh_token_logs() -> None:
    phrases = kql_phrases("reconsentQuery")
    dead = ReconsentRequired(
        "token request (refresh_token) refused: AADSTS700082: the Partner Center refresh token no longer works; "
        "a partner admin must sign in again (re-consent, Secure Application Model) and store the new refresh token",
        error="invalid_grant",
        status=400,
    )
    missing = ReconsentRequired("no Partner Center refresh token is configured", error="missing_refresh_token")

    # The run logs "<function>: <subject> failed: <str(error)>" at error level (SyncRun.fail).
    for error in (dead, missing):
        line = f"fetch_usage_records: run failed: {error}"
        assert any(phrase in line for phrase in phrases), line


def test_the_unauthorized_rule_matches_a_401_and_a_refused_client() -> None:
    phrases = kql_phrases("unauthorizedQuery")
    from shared.partner_center.errors import PartnerCenterError

    partner_center_401 = PartnerCenterError("Partner Center call failed", status=401, path="customers")
    bad_secret = AuthenticationError("token request (client_credentials) refused", error="invalid_client", status=401)

    for error in (partner_center_401, bad_secret):
        line = f"fetch_utilization: inventory failed: {error}"
        assert any(phrase in line for phrase in phrases), line


# ---------------------------------------------------------------------------------------------------------------
# What the rules read is never sampled away, and the stale-data rule waits for a function's first success.
# ---------------------------------------------------------------------------------------------------------------


def _deployment_checks():
    from tests.infra_support import ROOT, load_script

    return load_script("check_deployment"), ROOT


def test_host_json_never_samples_the_telemetry_the_rules_read() -> None:
    deployment, root = _deployment_checks()
    files = deployment.Files(root, root / "infra", root / ".github" / "workflows")

    assert deployment.alert_tables(ALERTS) == {"traces", "requests"}
    assert deployment.check_host(files) == []


def test_sampling_traces_fails(tmp_path: Path) -> None:
    deployment, root = _deployment_checks()
    host = (root / "host.json").read_text(encoding="utf-8").replace('"Request;Exception;Trace"', '"Request;Exception"')
    (tmp_path / "host.json").write_text(host, encoding="utf-8")
    files = deployment.Files(tmp_path, root / "infra", root / ".github" / "workflows")

    assert deployment.check_host(files) == [
        "host.json samples Trace telemetry, which the alert rules read (traces): add it to "
        "samplingSettings.excludedTypes"
    ]


def test_the_stale_rule_reports_only_functions_that_succeeded_before() -> None:
    block = ALERTS.split("var staleQuery = ", 1)[1].split("'''", 2)[1]
    assert "summarize lastSuccess = max(timestamp) by function" in block
    assert re.search(r"where lastSuccess < ago\(\{1\}h\)", block)
    assert "leftanti" not in block  # the old form listed every expected function without a success, new ones too


def test_the_stale_alert_stays_open_past_the_two_days_it_can_read() -> None:
    rule = ALERTS.split("resource staleData", 1)[1].split("\nresource ", 1)[0]
    assert "autoMitigate: false" in rule and "muteActionsDuration: 'PT24H'" in rule
    assert "overrideQueryTimeRange: 'P2D'" in rule
