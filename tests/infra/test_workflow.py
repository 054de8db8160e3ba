"""The workflow compiles, lints and previews the templates on every pull request, and deploys main only after that.

zizmor and the GitHub workflow schema (make check-infra) check the file's form; these tests check what it does.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.infra_support import ROOT, load_script

WORKFLOW: dict[Any, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
JOBS: dict[str, Any] = WORKFLOW["jobs"]
RUNBOOK = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")


def runs(job: str) -> list[str]:
    return [str(step.get("run", "")) for step in JOBS[job]["steps"]]


def step_if(job: str, command: str) -> str | None:
    return next(step.get("if") for step in JOBS[job]["steps"] if command in str(step.get("run", "")))


def test_it_runs_on_pull_requests_pushes_to_main_and_by_hand() -> None:
    triggers = WORKFLOW[True]  # PyYAML reads the key `on` as True
    assert triggers["pull_request"]["branches"] == ["main"] and triggers["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in triggers


def test_the_templates_are_built_and_linted_by_the_bicep_cli_azd_uses() -> None:
    commands = "\n".join(runs("templates"))
    assert 'az bicep install --version "v${BICEP_VERSION}"' in commands
    assert "az bicep build --file" in commands and "az bicep lint --file" in commands
    assert "infra/main.bicep infra/app/*.bicep" in commands
    assert re.fullmatch(r"\d+\.\d+\.\d+", WORKFLOW["env"]["BICEP_VERSION"])
    assert "if" not in JOBS["templates"]  # every pull request, no sign-in needed


def test_the_real_azd_package_is_compared_with_the_offline_rebuild() -> None:
    commands = "\n".join(runs("templates"))
    assert 'azd package api --output-path "$RUNNER_TEMP/api.zip" --no-prompt' in commands
    assert 'python scripts/package_app.py --zip "$RUNNER_TEMP/api.zip"' in commands


def test_azd_is_pinned_to_a_version_that_honours_funcignore() -> None:
    major, minor, _patch = (int(p) for p in WORKFLOW["env"]["AZD_VERSION"].split("."))
    assert (major, minor) >= (1, 18)
    assert WORKFLOW["env"]["AZD_VERSION"] == load_script("package_app").AZD_VERSION
    for job in ("templates", "azure"):
        setup = next(s for s in JOBS[job]["steps"] if str(s.get("uses", "")).startswith("Azure/setup-azd@"))
        assert setup["with"]["version"] == "${{ env.AZD_VERSION }}"


def test_pull_requests_are_previewed_and_only_main_is_provisioned_and_deployed() -> None:
    azure = JOBS["azure"]
    assert "github.event_name == 'pull_request'" in azure["if"] and "refs/heads/main" in azure["if"]
    assert set(azure["needs"]) == {"test", "templates"}
    commands = runs("azure")
    preview = next(i for i, c in enumerate(commands) if "azd provision --preview" in c)
    provision = next(i for i, c in enumerate(commands) if c.startswith("azd provision --no-prompt"))
    deploy = next(i for i, c in enumerate(commands) if c.startswith("azd deploy"))
    assert preview < provision < deploy
    assert step_if("azure", "azd provision --preview") is None
    assert step_if("azure", "azd provision --no-prompt") == "github.event_name != 'pull_request'"
    assert step_if("azure", "azd deploy") == "github.event_name != 'pull_request'"


def test_fork_pull_requests_never_get_a_token() -> None:
    assert "github.event.pull_request.head.repo.full_name == github.repository" in JOBS["azure"]["if"]
    for job, definition in JOBS.items():
        wants_token = (definition.get("permissions") or {}).get("id-token") == "write"
        assert wants_token is (job == "azure"), job
    assert WORKFLOW["permissions"] == {}


def test_each_environment_of_the_job_has_its_federated_credential_in_the_runbook() -> None:
    expression = JOBS["azure"]["environment"]  # pull_request && 'preview' || 'production'
    environments = set(re.findall(r"(?:&&|\|\|) '(\w+)'", expression))
    assert environments == {"preview", "production"}
    loop = re.search(r"for ENVIRONMENT in ([\w ]+); do", RUNBOOK)
    assert loop and set(loop.group(1).split()) == environments
    assert '\\"subject\\": \\"repo:$GITHUB_REPO:environment:$ENVIRONMENT\\"' in RUNBOOK


def test_the_pipeline_principal_gets_no_data_role_and_writes_no_role_definition() -> None:
    env = JOBS["azure"]["env"]
    assert env["AZURE_PRINCIPAL_DATA_ROLES"] == "false"
    assert env["AZURE_MANAGE_ROLE_DEFINITIONS"] == "false"
    assert env["AZURE_RESOURCE_GROUP"] == "${{ vars.AZURE_RESOURCE_GROUP }}"


def test_production_deploys_one_at_a_time() -> None:
    concurrency = JOBS["azure"]["concurrency"]
    assert "deploy-production" in concurrency["group"]
    assert concurrency["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
