"""scripts/check_infra.sh passes on the real deployment files and fails on broken copies.

The script builds its own tool venv (.venv-infra) on first use, so the first test here can take
about a minute; each later run takes seconds. Each broken copy is checked once, by one run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_infra.sh"
STORAGE = Path("app") / "storage.bicep"


def run_check(infra: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the check script (on a copy of infra/ when given) and return its result."""
    arguments = ["bash", str(SCRIPT)] + ([str(infra)] if infra else [])
    return subprocess.run(arguments, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)


def copy_infra(tmp_path: Path) -> Path:
    copy = tmp_path / "infra"
    shutil.copytree(ROOT / "infra", copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def failed_steps(result: subprocess.CompletedProcess[str]) -> str:
    return next((line for line in result.stdout.splitlines() if line.startswith("check_infra: FAILED")), "")


def test_real_deployment_files_pass() -> None:
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check_infra: all checks passed" in result.stdout


def test_bicep_syntax_error_fails(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    # A property without its value: the kind of typo a Bicep compiler would reject.
    replace_once(infra / STORAGE, "    accessTier: 'Hot'\n", "    accessTier:\n")

    result = run_check(infra)

    assert result.returncode != 0, result.stdout
    assert "bicep parse" in failed_steps(result)
    assert "app/storage.bicep: parse error" in result.stdout


FUNCTION = Path("app") / "function.bicep"


def test_a_flex_unsupported_site_config_property_or_setting_fails(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    replace_once(
        infra / FUNCTION, "      http20Enabled: true\n", "      http20Enabled: true\n      ftpsState: 'Disabled'\n"
    )
    replace_once(
        infra / FUNCTION,
        "  KEY_VAULT_URL: keyVaultUri\n",
        "  KEY_VAULT_URL: keyVaultUri\n  ENABLE_ORYX_BUILD: 'true'\n",
    )

    result = run_check(infra)

    assert result.returncode != 0, result.stdout
    assert "bicep parse" in failed_steps(result)
    assert "siteConfig.ftpsState is rejected by Flex Consumption" in result.stdout
    assert "app setting ENABLE_ORYX_BUILD is not supported on Flex Consumption" in result.stdout


def test_a_role_id_under_the_wrong_name_fails(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    owner, reader = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
    replace_once(infra / "app" / "rbac.bicep", f"'{owner}')", f"'{reader}')")

    result = run_check(infra)

    assert result.returncode != 0, result.stdout
    assert f"role storageBlobDataOwner: id {reader} is not that role's ({owner})" in result.stdout


def test_storage_shared_key_access_fails(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    replace_once(infra / STORAGE, "allowSharedKeyAccess: false", "allowSharedKeyAccess: true")

    result = run_check(infra)

    assert result.returncode != 0, result.stdout
    assert "checkov" in failed_steps(result)
    assert "FAILED CKV_PCU_1 Microsoft.Storage/storageAccounts.storage" in result.stdout


FLEX = json.loads((ROOT / "infra" / "flex-consumption.json").read_text(encoding="utf-8"))


def test_the_flex_lists_name_their_source() -> None:
    for section in ("regions", "appSettings", "siteConfig"):
        assert FLEX[section]["source"].strip(), section
        assert FLEX[section]["completeness"].strip(), section
        assert FLEX[section]["values"], section


def test_a_location_outside_the_flex_regions_fails(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    # A region without Flex Consumption (China North 3 is sovereign; Flex is absent there) added to @allowed.
    replace_once(infra / "main.bicep", "  'westus3'\n])\n@metadata", "  'westus3'\n  'chinanorth3'\n])\n@metadata")

    result = run_check(infra)

    assert result.returncode != 0, result.stdout
    assert "param location: chinanorth3 is not a Flex Consumption region" in result.stdout


def test_every_listed_flex_unsupported_setting_and_site_config_property_fails(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    settings = "".join(f"  {name}: 'x'\n" for name in FLEX["appSettings"]["values"])
    replace_once(infra / FUNCTION, "  KEY_VAULT_URL: keyVaultUri\n", "  KEY_VAULT_URL: keyVaultUri\n" + settings)
    site_config = "".join(f"      {name}: 'x'\n" for name in FLEX["siteConfig"]["values"])
    replace_once(infra / FUNCTION, "      http20Enabled: true\n", "      http20Enabled: true\n" + site_config)

    result = run_check(infra)

    assert result.returncode != 0, result.stdout
    assert "bicep parse" in failed_steps(result)
    for name in FLEX["appSettings"]["values"]:
        assert f"app setting {name} " in result.stdout, name
    for name in FLEX["siteConfig"]["values"]:
        assert f"siteConfig.{name} is rejected by Flex Consumption" in result.stdout, name


def test_a_template_that_writes_a_secret_fails(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    secret = (
        "\nresource seeded 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {\n"
        "  parent: vault\n  name: 'partner-center-refresh-token'\n"
        "  properties: {\n    value: 'stale'\n    contentType: 'text/plain'\n  }\n}\n"
    )
    replace_once(infra / "app" / "keyvault.bicep", "\noutput name string", secret + "\noutput name string")

    result = run_check(infra)

    assert result.returncode != 0, result.stdout
    assert "resource seeded: templates must not write secrets" in result.stdout


def test_the_refresh_token_writer_on_the_whole_vault_fails(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    replace_once(
        infra / "app" / "rbac.bicep",
        "  scope: refreshTokenSecret\n",
        "  scope: vault\n",
    )

    result = run_check(infra)

    assert result.returncode != 0, result.stdout
    assert (
        "resource appRefreshTokenWriter: the app identity gets the refresh-token writer role only on" in result.stdout
    )


def test_a_custom_role_that_can_delete_or_an_app_secrets_officer_fails(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    rbac = infra / "app" / "rbac.bicep"
    replace_once(
        rbac,
        "          'Microsoft.KeyVault/vaults/secrets/setSecret/action'\n",
        "          'Microsoft.KeyVault/vaults/secrets/setSecret/action'\n"
        "          'Microsoft.KeyVault/vaults/secrets/delete'\n",
    )
    replace_once(rbac, "    roleDefinitionId: refreshTokenWriter\n", "    roleDefinitionId: keyVaultSecretsOfficer\n")

    result = run_check(infra)

    assert result.returncode != 0, result.stdout
    assert "role definition refreshTokenWriterRole: only get and set a secret's value, not" in result.stdout
    assert "resource appRefreshTokenWriter: the app identity never gets Key Vault Secrets Officer" in result.stdout


def test_a_role_broader_than_the_role_table_fails(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    rbac = infra / "app" / "rbac.bicep"
    text = rbac.read_text(encoding="utf-8")
    # The queue role on the whole storage account instead of the rated-ingest queue.
    assert text.count("  scope: ratedIngestQueue\n") == 1
    rbac.write_text(text.replace("  scope: ratedIngestQueue\n", "  scope: storage\n"), encoding="utf-8")

    result = run_check(infra)

    assert result.returncode != 0, result.stdout
    assert "bicep parse" in failed_steps(result)
    assert (
        "app identity gets Storage Queue Data Contributor on a storage account, which the role table of "
        "README.md does not list: a broader or new grant" in result.stdout
    )
    assert "the role table lists Storage Queue Data Contributor on a queue for app identity, which no template" in (
        result.stdout
    )


def test_an_operator_setting_the_workflow_drops_fails_the_deployment_step(tmp_path: Path) -> None:
    infra = copy_infra(tmp_path)
    workflows = tmp_path / "workflows"
    shutil.copytree(ROOT / ".github" / "workflows", workflows)
    replace_once(workflows / "ci.yml", "      CUSTOMER_DENY_LIST: ${{ vars.CUSTOMER_DENY_LIST }}\n", "")

    result = subprocess.run(
        ["bash", str(SCRIPT), str(infra), str(workflows)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )

    assert result.returncode != 0, result.stdout
    assert "deployment settings" in failed_steps(result)
    assert "env needs `CUSTOMER_DENY_LIST: ${{ vars.CUSTOMER_DENY_LIST }}`" in result.stdout
