"""docs/deploy.md pastes in order on a fresh subscription, as far as its text can tell.

scripts/check_deployment.py (make check-infra) reads the runbook's bash blocks in order: every variable set
before a block uses it, the venv's Python, `az account set` first, providers registered before the region check
(with --runtime python), the application-insights extension before a query, every timer triggered, valid bash,
and each numbered step saying what to expect. Each test gives it a small runbook with one mistake.
"""

from __future__ import annotations

from pathlib import Path

from tests.infra_support import ROOT, load_script

deployment = load_script("check_deployment")
TIMERS = " ".join(job.name for job in deployment.JOBS)


def runbook(tmp_path: Path, *steps: str) -> list[str]:
    """The problems of a runbook made of these steps (each `## N. title` + body)."""
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / "deploy.md").write_text("# Deploying\n\n" + "\n".join(steps), encoding="utf-8")
    return deployment.check_runbook(tmp_path)


def bash(code: str) -> str:
    return f"```bash\n{code}\n```\n"


SIGN_IN = "## 1. Sign in\n\n" + bash('az login --tenant "$T"\naz account set --subscription "$S"') + "Expected: ok.\n"
NAMES = (
    "## 0. Names\n\n" + bash('export T="tenant"\nexport S="sub"\nexport LOCATION="westeurope"') + "Expected: none.\n"
)
REGION = (
    "## 2. Region\n\n"
    + bash(
        'for NS in Microsoft.Web; do az provider register --namespace "$NS" --wait; done\n'
        'az functionapp list-flexconsumption-locations --runtime python --query "[].name" -o tsv | grep -x "$LOCATION"'
    )
    + "Expected: the region.\n"
)
TRIGGER = (
    "## 3. Run\n\n"
    + bash(f'for F in {TIMERS}; do curl -X POST "https://app/admin/functions/$F"; done')
    + "Expected: 202.\n"
)
GOOD = (NAMES, SIGN_IN, REGION, TRIGGER)


def test_the_real_runbook_passes() -> None:
    assert deployment.check_runbook(ROOT) == []


def test_a_good_small_runbook_passes(tmp_path: Path) -> None:
    assert runbook(tmp_path, *GOOD) == []


def test_a_variable_no_earlier_block_sets_fails(tmp_path: Path) -> None:
    late = "## 4. Scoped\n\n" + bash('az ad app create --display-name "$APP_NAME-usage-api"') + "Expected: an id.\n"

    (problem,) = runbook(tmp_path, *GOOD, late)

    assert problem.endswith("(4. Scoped): $APP_NAME is used before any block sets it")


def test_a_bare_python_fails(tmp_path: Path) -> None:
    grants = "## 4. Grants\n\n" + bash("python -m tools.grants list\nX=$(python3 -c 'print(1)')") + "Expected: rows.\n"

    problems = runbook(tmp_path, *GOOD, grants)

    assert len(problems) == 2 and all("runs a bare python; use .venv/bin/python" in p for p in problems)


def test_an_az_command_before_account_set_fails(tmp_path: Path) -> None:
    sign_in = "## 1. Sign in\n\n" + bash('az login --tenant "$T"\naz group list') + "Expected: ok.\n"

    problems = runbook(tmp_path, NAMES, sign_in, REGION, TRIGGER)

    assert any("the first az command after `az login` must be `az account set`" in p for p in problems)


def test_the_region_check_before_registration_or_without_python_fails(tmp_path: Path) -> None:
    region = (
        "## 2. Region\n\n"
        + bash('az functionapp list-flexconsumption-locations --query "[].name" -o tsv | grep -x "$LOCATION"')
        + "Expected: the region.\n"
    )

    problems = runbook(tmp_path, NAMES, SIGN_IN, region, TRIGGER)

    assert any("register the resource providers before the region check" in p for p in problems)
    assert any("the region check must ask for `--runtime python`" in p for p in problems)


def test_an_app_insights_query_without_its_extension_fails(tmp_path: Path) -> None:
    logs = (
        "## 4. Logs\n\n"
        + bash("az monitor app-insights query --app x --analytics-query 'traces'")
        + "Expected: rows.\n"
    )

    (problem,) = runbook(tmp_path, *GOOD, logs)

    assert "needs `az extension add --name application-insights` first" in problem


def test_triggering_one_timer_only_fails(tmp_path: Path) -> None:
    one = "## 3. Run\n\n" + bash('curl -X POST "https://app/admin/functions/fetch_usage_records"') + "Expected: 202.\n"

    problems = runbook(tmp_path, NAMES, SIGN_IN, REGION, one)

    missing = [job.name for job in deployment.JOBS if job.name != "fetch_usage_records"]
    assert problems == [
        f"docs/deploy.md never triggers {name} (the step that runs the timers once)" for name in missing
    ]


def test_a_step_without_its_expected_output_fails(tmp_path: Path) -> None:
    quiet = "## 4. Restart\n\n" + bash("az functionapp restart --name x --resource-group y")

    assert runbook(tmp_path, *GOOD, quiet) == [
        "docs/deploy.md: step '4. Restart' does not say what to expect (a line with 'Expected')"
    ]


def test_a_block_that_is_not_valid_bash_fails(tmp_path: Path) -> None:
    broken = "## 4. Loop\n\n" + bash("for X in a b; do echo $X") + "Expected: a b.\n"

    (problem,) = runbook(tmp_path, *GOOD, broken)

    assert "(4. Loop): not valid bash" in problem
