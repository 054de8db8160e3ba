"""The CI principal may assign exactly the roles the templates give to the identities, and to nobody else.

scripts/ci_role_condition.py writes the ABAC condition of its Role Based Access Control Administrator assignment
from infra/app/rbac.bicep, so a role the templates start assigning is either in the condition or fails the
preview (denied) before anything changes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra_support import ROOT, load_script

RBAC = (ROOT / "infra" / "app" / "rbac.bicep").read_text(encoding="utf-8")
WRITER = "11111111-2222-3333-4444-555555555555"
APP, DEPLOY = "aaaaaaaa-0000-0000-0000-000000000001", "aaaaaaaa-0000-0000-0000-000000000002"


roles = load_script("ci_role_condition")


def role_id(variable: str) -> str:
    found = re.search(rf"^var {variable} = subscriptionResourceId\([^,]+, '([0-9a-f-]+)'\)", RBAC, re.M)
    assert found, variable
    return found.group(1)


def test_the_condition_allows_exactly_the_roles_assigned_to_the_identities() -> None:
    assert set(roles.role_ids(RBAC, WRITER)) == {
        role_id("storageBlobDataOwner"),
        role_id("storageTableDataContributor"),
        role_id("storageQueueDataContributor"),
        role_id("monitoringMetricsPublisher"),
        role_id("keyVaultSecretsUser"),
        role_id("storageBlobDataContributor"),
        WRITER,
    }


def test_the_deployer_s_roles_are_not_the_pipeline_s() -> None:
    assert role_id("keyVaultSecretsOfficer") not in roles.role_ids(RBAC, WRITER)


def test_writing_and_deleting_are_both_constrained_to_roles_and_principals() -> None:
    condition = roles.condition(roles.role_ids(RBAC, WRITER), [APP, DEPLOY])

    principals = f"ForAnyOfAnyValues:GuidEquals {{{APP}, {DEPLOY}}}"
    write, delete = condition.split(") AND ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'}))")
    assert "ActionMatches{'Microsoft.Authorization/roleAssignments/write'}" in write
    assert "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals" in write
    assert f"@Request[Microsoft.Authorization/roleAssignments:PrincipalId] {principals}" in write
    assert "@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals" in delete
    assert f"@Resource[Microsoft.Authorization/roleAssignments:PrincipalId] {principals}" in delete
    assert condition.count(WRITER) == 2


def test_a_role_the_script_cannot_name_stops_it(tmp_path: Path) -> None:
    extra = RBAC + (
        "\nresource appReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {\n"
        "  name: guid(storage.id, appPrincipalId, readerRole)\n  scope: storage\n  properties: {\n"
        "    roleDefinitionId: readerRole\n    principalId: appPrincipalId\n"
        "    principalType: 'ServicePrincipal'\n  }\n}\n"
    )

    with pytest.raises(SystemExit, match=r"rbac\.bicep assigns readerRole"):
        roles.role_ids(extra, WRITER)


def test_ids_that_are_not_guids_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        roles.main(["--writer-role-id", "", "--principal-id", APP])
    assert "not a GUID" in capsys.readouterr().err


def test_the_command_prints_one_condition(capsys: pytest.CaptureFixture[str]) -> None:
    assert roles.main(["--writer-role-id", WRITER, "--principal-id", APP, "--principal-id", DEPLOY]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR")
