"""infra/main.bicep allows no more than the app accepts, and defaults to what it defaults to: each setting's bounds,
words and default are declared once, in SETTINGS (schedules with their job in JOBS).

A parameter the Bicep allows and the app refuses (``utilizationLagHours`` 0, ``inventoryRefreshHours`` without a
maximum) deploys an app that fails at start. The check is scripts/check_deployment.py's (make check-infra runs it);
these tests hold it to the real templates and to broken copies. Pure text reading: no Bicep tooling needed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.infra_support import ROOT, load_script

deployment = load_script("check_deployment")


def files_for(infra: Path) -> object:
    return deployment.Files(ROOT, infra, ROOT / ".github" / "workflows")


@pytest.fixture
def infra(tmp_path: Path) -> Path:
    copy = tmp_path / "infra"
    shutil.copytree(ROOT / "infra", copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_the_real_parameters_allow_what_the_app_accepts() -> None:
    assert deployment.check_bounds(files_for(ROOT / "infra")) == []


def test_every_operator_setting_with_limits_has_a_parameter() -> None:
    params = deployment.parameters((ROOT / "infra" / "main.bicep").read_text(encoding="utf-8"))
    limited = [s for s in deployment.operator_settings(ROOT / "infra") if s.bounds or s.choices]
    assert limited and all(deployment.camel(s.name) in params for s in limited)


def test_a_maximum_looser_than_the_app_s_fails(infra: Path) -> None:
    replace_once(infra / "main.bicep", "@maxValue(32)\nparam syncConcurrency", "@maxValue(64)\nparam syncConcurrency")

    problems = deployment.check_bounds(files_for(infra))

    assert problems == [
        "main.bicep: syncConcurrency (SYNC_CONCURRENCY) must be an int with @minValue(1) @maxValue(32), the app's "
        "range 1 to 32; found int 1..64"
    ]


def test_a_missing_minimum_fails(infra: Path) -> None:
    replace_once(infra / "main.bicep", "@minValue(2)\n@maxValue(72)\n", "@maxValue(72)\n")

    (problem,) = deployment.check_bounds(files_for(infra))

    assert "utilizationLagHours (UTILIZATION_LAG_HOURS) must be an int with @minValue(2) @maxValue(72)" in problem


def test_a_word_the_app_refuses_fails(infra: Path) -> None:
    replace_once(infra / "main.bicep", "  'both'\n  'token'\n])", "  'both'\n  'token'\n  'open'\n])")

    (problem,) = deployment.check_bounds(files_for(infra))

    assert problem.startswith("main.bicep: apiAccessMode (API_ACCESS_MODE) must allow exactly ['key', 'both', 'token']")


def test_a_flag_that_takes_any_word_fails(infra: Path) -> None:
    replace_once(
        infra / "main.bicep",
        "@allowed([\n  'true'\n  'false'\n])\nparam utilizationShowDetails string",
        "param utilizationShowDetails string",
    )

    (problem,) = deployment.check_bounds(files_for(infra))

    assert "utilizationShowDetails (UTILIZATION_SHOW_DETAILS) is a flag" in problem


def test_a_fractional_setting_is_a_string_the_app_checks() -> None:
    fractional = [s for s in deployment.operator_settings(ROOT / "infra") if deployment._is_fraction(s)]
    params = deployment.parameters((ROOT / "infra" / "main.bicep").read_text(encoding="utf-8"))
    for setting in fractional:
        assert params[deployment.camel(setting.name)].type == "string", setting.name


def test_the_reader_finds_every_decorator() -> None:
    text = "@minValue(2)\n@maxValue(72)\nparam lag int = 6\n@allowed([\n  'a'\n  'b'\n])\nparam word string = 'a'\n"
    assert deployment.parameters(text) == {
        "lag": deployment.Param("int", "6", 2, 72),
        "word": deployment.Param("string", "a", allowed=["a", "b"]),
    }
