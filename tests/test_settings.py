"""Settings: declared once, read and validated from the environment, documented exactly where users look."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.settings import BY_NAME, SETTINGS, ReadBy, Settings, SettingsError
from shared.sync.jobs import JOBS

REPO = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def table_names(markdown: Path, heading: str) -> set[str]:
    """The setting names in the first column of the table under ``heading``."""
    lines = markdown.read_text(encoding="utf-8").splitlines()
    start = lines.index(heading)
    names: set[str] = set()
    in_table = False
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            in_table = True
            first_cell = line.split("|")[1]
            names.update(_NAME.findall(first_cell))
        elif in_table or line.startswith("#"):
            break
    return names


DECLARED = {setting.name for setting in SETTINGS}


def test_the_readme_lists_exactly_the_declared_settings():
    assert table_names(REPO / "README.md", "## Settings") == DECLARED


def test_the_architecture_doc_lists_exactly_the_declared_settings():
    assert table_names(REPO / "docs" / "architecture.md", "## Settings (app settings / environment variables)") == (
        DECLARED
    )


def test_local_settings_example_holds_exactly_the_declared_settings():
    values = json.loads((REPO / "local.settings.example.json").read_text(encoding="utf-8"))["Values"]
    assert set(values) == DECLARED


def test_every_schedule_a_function_json_reads_is_declared_for_the_host():
    for job in JOBS:
        binding = json.loads((REPO / job.name / "function.json").read_text(encoding="utf-8"))["bindings"][0]
        assert binding["schedule"] == f"%{job.schedule_setting}%"
        assert BY_NAME[job.schedule_setting].read_by == ReadBy.HOST


def test_every_app_setting_fills_one_field_and_every_field_has_a_setting():
    attributes = [s.attribute for s in SETTINGS if s.read_by == ReadBy.APP]
    assert None not in attributes and len(attributes) == len(set(attributes))
    assert set(attributes) == set(Settings.__dataclass_fields__)


def test_defaults_are_the_declared_ones():
    assert Settings() == Settings.from_env({})
    defaults = Settings()
    assert defaults.table_prefix == "pc" and defaults.sync_concurrency == 4 and defaults.utilization_show_details
    assert defaults.sync_time_budget_seconds == 480.0 and defaults.utilization_granularity == "daily"


def test_values_are_parsed_and_ids_lower_cased():
    settings = Settings.from_env(
        {
            "PARTNER_CENTER_BASE_URL": "http://127.0.0.1:9/",
            "UTILIZATION_SHOW_DETAILS": "no",
            "SYNC_CONCURRENCY": "8",
            "CUSTOMER_ALLOW_LIST": " A1, b2 ,,",
            "UTILIZATION_GRANULARITY": "Hourly",
        }
    )
    assert settings.base_url == "http://127.0.0.1:9"
    assert settings.utilization_show_details is False and settings.sync_concurrency == 8
    assert settings.customer_allow_list == frozenset({"a1", "b2"}) and settings.utilization_granularity == "hourly"


def test_the_identity_client_id_falls_back_to_the_storage_one():
    assert Settings.from_env({"USAGE_STORAGE__clientId": "mi"}).identity_client_id == "mi"
    assert Settings.from_env({"USAGE_STORAGE__clientId": "mi", "AZURE_CLIENT_ID": "kv"}).identity_client_id == "kv"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SYNC_CONCURRENCY", "0", "between 1 and 32"),
        ("SYNC_CONCURRENCY", "four", "must be a number"),
        ("UTILIZATION_BACKFILL_DAYS", "91", "between 1 and 90"),
        ("UTILIZATION_WINDOW_HOURS", "5", "must divide 24"),
        ("UTILIZATION_GRANULARITY", "monthly", "daily or hourly"),
        ("UTILIZATION_SHOW_DETAILS", "maybe", "true or false"),
        ("TABLE_PREFIX", "1pc", "letters and digits"),
        ("HEALTH_MAX_AGE_HOURS", "0", "between 0.1"),
    ],
)
def test_a_malformed_setting_names_itself(name, value, says):
    with pytest.raises(SettingsError, match=name) as caught:
        Settings.from_env({name: value})
    assert says in str(caught.value)


def test_missing_partner_center_settings_are_named_together_without_values():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PARTNER_CENTER_CLIENT_ID": "app"}).require_partner_center()
    message = str(caught.value)
    assert "PARTNER_CENTER_TENANT_ID" in message and "PARTNER_CENTER_REFRESH_TOKEN" in message
    assert "PARTNER_CENTER_CLIENT_ID" not in message


def test_the_graph_client_needs_no_refresh_token_and_names_what_it_does_need():
    app_only = {"PARTNER_CENTER_TENANT_ID": "t", "PARTNER_CENTER_CLIENT_ID": "app", "PARTNER_CENTER_CLIENT_SECRET": "s"}
    Settings.from_env(app_only).require_graph()
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PARTNER_CENTER_CLIENT_ID": "app", "PARTNER_CENTER_REFRESH_TOKEN": "r"}).require_graph()
    message = str(caught.value)
    assert "PARTNER_CENTER_TENANT_ID" in message and "PARTNER_CENTER_CLIENT_SECRET" in message
    assert "REFRESH_TOKEN" not in message and "PARTNER_CENTER_CLIENT_ID" not in message


def readme_rows() -> dict[str, str]:
    """README's settings table: the row of each setting name."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    rows = {}
    for line in lines[lines.index("## Settings") :]:
        if line.startswith("| `"):
            for name in _NAME.findall(line.split("|")[1]):
                rows[name] = line
        elif rows and not line.startswith("|"):
            break
    return rows


def test_the_readme_states_every_range_and_every_word_the_app_accepts():
    rows = readme_rows()
    for setting in SETTINGS:
        if setting.bounds is not None:
            assert f"({setting.bounds.text}" in rows[setting.name], setting.name
        for word in setting.choices or ():
            assert f"`{word}`" in rows[setting.name], setting.name


@pytest.mark.parametrize(("value", "says"), [("2.5", "whole number"), ("73", "between 2 and 72")])
def test_a_whole_number_setting_refuses_fractions_and_values_out_of_range(value, says):
    with pytest.raises(SettingsError, match=says):
        Settings.from_env({"UTILIZATION_LAG_HOURS": value})
