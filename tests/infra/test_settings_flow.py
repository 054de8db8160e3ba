"""Every app setting an operator may set flows from one place to the app, so the next push cannot undo it.

repository variable NAME -> the env of the workflow job that runs azd provision -> main.parameters.json ${NAME} ->
main.bicep parameter -> syncSettings -> the appsettings resource (which replaces the whole set). The settings the
templates fix and those never in Azure are listed in infra/app-settings.json; every other setting of SETTINGS is
the operator's. scripts/check_deployment.py holds this (make check-infra); each test breaks one link of a copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from shared.settings import SETTINGS, Bounds, Setting
from tests.infra_support import ROOT, load_script

deployment = load_script("check_deployment")


@pytest.fixture
def copies(tmp_path: Path) -> tuple[Path, Path]:
    infra, workflows = tmp_path / "infra", tmp_path / "workflows"
    shutil.copytree(ROOT / "infra", infra, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / ".github" / "workflows", workflows)
    return infra, workflows


def check(infra: Path, workflows: Path) -> list[str]:
    return deployment.check_settings(deployment.Files(ROOT, infra, workflows))


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_the_real_files_carry_every_setting() -> None:
    assert check(ROOT / "infra", ROOT / ".github" / "workflows") == []


def test_every_declared_setting_is_classified_once() -> None:
    data = json.loads((ROOT / "infra" / "app-settings.json").read_text(encoding="utf-8"))
    template, not_in_azure = set(data["template"]["values"]), set(data["notInAzure"]["values"])
    operators = {s.name for s in deployment.operator_settings(ROOT / "infra")}
    assert not template & not_in_azure
    assert {s.name for s in SETTINGS} == operators | ({s.name for s in SETTINGS} & (template | not_in_azure))
    assert {"API_ACCESS_MODE", "API_AUDIENCE", "API_ALLOWED_TENANTS", "API_CORS_ORIGINS"} <= operators
    assert {"CUSTOMER_ALLOW_LIST", "CUSTOMER_DENY_LIST", "USAGE_RECORDS_SCHEDULE"} <= operators


def test_the_deploy_job_sets_every_operator_setting_from_its_repository_variable() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    env = workflow["jobs"]["azure"]["env"]
    for setting in deployment.operator_settings(ROOT / "infra"):
        assert env[setting.name] == f"${{{{ vars.{setting.name} }}}}", setting.name


def test_a_setting_the_workflow_does_not_pass_fails(copies: tuple[Path, Path]) -> None:
    infra, workflows = copies
    replace_once(workflows / "ci.yml", "      API_ACCESS_MODE: ${{ vars.API_ACCESS_MODE }}\n", "")

    problems = check(infra, workflows)

    assert "ci.yml: azure: env needs `API_ACCESS_MODE: ${{ vars.API_ACCESS_MODE }}` (found None)" in problems
    assert any("main.parameters.json reads API_ACCESS_MODE (apiAccessMode)" in p for p in problems)


def test_a_setting_the_parameters_file_does_not_read_fails(copies: tuple[Path, Path]) -> None:
    infra, workflows = copies
    parameters = json.loads((infra / "main.parameters.json").read_text(encoding="utf-8"))
    del parameters["parameters"]["customerDenyList"]
    (infra / "main.parameters.json").write_text(json.dumps(parameters), encoding="utf-8")

    (problem,) = check(infra, workflows)

    assert problem.startswith('main.parameters.json: customerDenyList must be {"value": "${CUSTOMER_DENY_LIST}"}')


def test_a_parameters_file_default_other_than_the_app_s_fails(copies: tuple[Path, Path]) -> None:
    infra, workflows = copies
    replace_once(infra / "main.parameters.json", "${API_ACCESS_MODE=key}", "${API_ACCESS_MODE=token}")

    (problem,) = check(infra, workflows)

    assert 'apiAccessMode must be {"value": "${API_ACCESS_MODE=key}"}' in problem


def test_a_setting_main_bicep_does_not_set_fails(copies: tuple[Path, Path]) -> None:
    infra, workflows = copies
    replace_once(infra / "main.bicep", "  API_CORS_ORIGINS: apiCorsOrigins\n", "")

    (problem,) = check(infra, workflows)

    assert "operator setting API_CORS_ORIGINS (shared/settings.py): wire it through" in problem
    assert "add `API_CORS_ORIGINS: apiCorsOrigins` to syncSettings" in problem


def test_a_setting_set_from_another_parameter_fails(copies: tuple[Path, Path]) -> None:
    infra, workflows = copies
    replace_once(
        infra / "main.bicep",
        "  API_TOKEN_AUTHORITY: apiTokenAuthority\n",
        "  API_TOKEN_AUTHORITY: partnerCenterAuthority\n",
    )

    (problem,) = check(infra, workflows)

    assert (
        problem == "main.bicep: syncSettings.API_TOKEN_AUTHORITY must be set from its own parameter apiTokenAuthority"
    )


def test_a_parameter_default_other_than_the_app_s_fails(copies: tuple[Path, Path]) -> None:
    infra, workflows = copies
    replace_once(
        infra / "main.bicep", "param apiRequiredRole string = 'Usage.Read'", "param apiRequiredRole string = ''"
    )

    (problem,) = check(infra, workflows)

    assert problem == "main.bicep: apiRequiredRole defaults to '', the app to 'Usage.Read' (API_REQUIRED_ROLE)"


def test_an_app_setting_nobody_declared_fails(copies: tuple[Path, Path]) -> None:
    infra, workflows = copies
    replace_once(
        infra / "main.bicep",
        "  TABLE_PREFIX: tablePrefix\n",
        "  TABLE_PREFIX: tablePrefix\n  DEBUG_MODE: tablePrefix\n",
    )

    problems = check(infra, workflows)

    assert (
        "app setting DEBUG_MODE is set by the templates but is listed in neither SETTINGS nor infra/app-settings.json"
        in problems
    )


def test_a_template_setting_no_template_sets_fails(copies: tuple[Path, Path]) -> None:
    infra, workflows = copies
    replace_once(infra / "app" / "function.bicep", "  USAGE_QUEUE__credential: 'managedidentity'\n", "")

    problems = check(infra, workflows)

    assert (
        "USAGE_QUEUE__credential is listed as template in infra/app-settings.json but function.bicep never sets it"
        in problems
    )


def test_a_variable_the_parameters_file_reads_but_the_workflow_does_not_give_fails(copies: tuple[Path, Path]) -> None:
    infra, workflows = copies
    replace_once(workflows / "ci.yml", "      ALERT_EMAIL: ${{ vars.ALERT_EMAIL }}\n", "")

    (problem,) = check(infra, workflows)

    assert problem.startswith("ci.yml: azure: main.parameters.json reads ALERT_EMAIL (alertEmail)")


def test_a_new_setting_in_settings_that_nothing_carries_fails_with_the_bicep_to_add(
    copies: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    infra, workflows = copies
    new = Setting(
        "EXPORT_BATCH_SIZE", "50", "lines per batch (1 to 500)", "export_batch_size", Bounds(1, 500, integer=True)
    )
    monkeypatch.setattr(deployment, "SETTINGS", (*SETTINGS, new))

    problems = check(infra, workflows)

    wiring = next(p for p in problems if p.startswith("operator setting EXPORT_BATCH_SIZE"))
    assert "add `EXPORT_BATCH_SIZE: string(exportBatchSize)` to syncSettings" in wiring
    assert "@minValue(1)\n@maxValue(500)\nparam exportBatchSize int = 50" in wiring
    assert any('exportBatchSize must be {"value": "${EXPORT_BATCH_SIZE=50}"}' in p for p in problems)
    assert "ci.yml: azure: env needs `EXPORT_BATCH_SIZE: ${{ vars.EXPORT_BATCH_SIZE }}` (found None)" in problems


def test_a_new_setting_listed_as_template_needs_only_its_template(
    copies: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    infra, workflows = copies
    new = Setting("USAGE_STORAGE__credential", "", "how the tables authenticate", "storage_credential")
    monkeypatch.setattr(deployment, "SETTINGS", (*SETTINGS, new))

    assert check(infra, workflows) == []


def test_the_settings_resource_replaces_the_set_with_exactly_both_maps() -> None:
    function = (ROOT / "infra" / "app" / "function.bicep").read_text(encoding="utf-8")
    assert function.count("Microsoft.Web/sites/config@") == 1
    assert "properties: union(appSettings, identitySettings)" in function


def test_the_azd_environment_s_settings_become_repository_variables() -> None:
    variables = load_script("ci_variables")
    values = {
        "API_ACCESS_MODE": "both",
        "USAGE_RECORDS_SCHEDULE": "0 5 * * * *",
        "KEY_VAULT_URL": "https://kv.vault.azure.net/",  # fixed by the templates: never a variable
        "CUSTOMER_DENY_LIST": "",  # empty: the default, nothing to set
        "AZURE_LOCATION": "westeurope",  # not an app setting
    }

    assert variables.commands(values, "contoso/usage") == [
        "gh variable set USAGE_RECORDS_SCHEDULE --repo contoso/usage --body '0 5 * * * *'",
        "gh variable set API_ACCESS_MODE --repo contoso/usage --body both",
    ]
