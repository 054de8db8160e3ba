"""The ABAC condition of the CI principal's Role Based Access Control Administrator assignment.

The pipeline must create (and, when a template drops one, delete) the role assignments of infra/app/rbac.bicep,
and nothing else: the condition allows writing and deleting only assignments of the roles the templates give
to service principals (read from rbac.bicep, so it cannot drift from them; the custom refresh-token writer's id
comes from the azd output AZURE_REFRESH_TOKEN_WRITER_ROLE_ID), only to the given principals (the app and
deployment identities: azd outputs AZURE_APP_IDENTITY_PRINCIPAL_ID and AZURE_DEPLOYMENT_IDENTITY_PRINCIPAL_ID).
The expression follows Microsoft's "Constrain roles and specific principals" example for delegating role
assignment management (condition version 2.0). docs/deploy.md, step 12, passes it to `az role assignment create`.

Usage: python scripts/ci_role_condition.py --writer-role-id GUID --principal-id GUID [--principal-id GUID ...]
       python scripts/ci_role_condition.py --list-roles      (the role definition ids the condition allows)
Standard library only.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

RBAC = Path(__file__).resolve().parents[1] / "infra" / "app" / "rbac.bicep"
CUSTOM_ROLES = {"refreshTokenWriter"}  # variables of rbac.bicep naming a custom role; its id is an argument
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ROLE_VAR = re.compile(
    r"^var (\w+) = subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', '([0-9a-f-]{36})'\)", re.M
)
_RESOURCE = re.compile(r"^resource \w+ 'Microsoft\.Authorization/roleAssignments@[^']+' = .*?^\}", re.M | re.S)


def service_principal_roles(text: str) -> list[str]:
    """The role variables rbac.bicep assigns to service principals (the identities the pipeline deploys)."""
    roles: list[str] = []
    for block in _RESOURCE.findall(text):
        if "principalType: 'ServicePrincipal'" not in block:
            continue
        role = re.search(r"roleDefinitionId: (\w+)", block)
        if role and role.group(1) not in roles:
            roles.append(role.group(1))
    return roles


def role_ids(text: str, writer_role_id: str) -> list[str]:
    """The role definition ids (GUIDs) the pipeline may assign, in rbac.bicep's order."""
    built_in = dict(_ROLE_VAR.findall(text))
    ids: list[str] = []
    for role in service_principal_roles(text):
        if role in CUSTOM_ROLES:
            ids.append(writer_role_id)
        elif role in built_in:
            ids.append(built_in[role])
        else:
            raise SystemExit(f"ci_role_condition: rbac.bicep assigns {role}, whose id this script cannot tell")
    return list(dict.fromkeys(ids))


def condition(roles: list[str], principals: list[str]) -> str:
    """Write and delete role assignments only for these roles and these principals."""
    role_set = "{" + ", ".join(roles) + "}"
    principal_set = "{" + ", ".join(principals) + "}"
    attribute = "Microsoft.Authorization/roleAssignments"
    return (
        f"((!(ActionMatches{{'{attribute}/write'}})) OR "
        f"(@Request[{attribute}:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {role_set} AND "
        f"@Request[{attribute}:PrincipalId] ForAnyOfAnyValues:GuidEquals {principal_set})) AND "
        f"((!(ActionMatches{{'{attribute}/delete'}})) OR "
        f"(@Resource[{attribute}:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {role_set} AND "
        f"@Resource[{attribute}:PrincipalId] ForAnyOfAnyValues:GuidEquals {principal_set}))"
    )


def _guid(value: str) -> str:
    if not _GUID.match(value):
        raise argparse.ArgumentTypeError(f"not a GUID: {value!r} (is the azd environment provisioned?)")
    return value.lower()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writer-role-id", type=_guid, help="azd env get-value AZURE_REFRESH_TOKEN_WRITER_ROLE_ID")
    parser.add_argument("--principal-id", type=_guid, action="append", default=[], help="an identity's object id")
    parser.add_argument("--list-roles", action="store_true", help="print the allowed role definition ids and stop")
    parser.add_argument("--rbac", type=Path, default=RBAC)
    args = parser.parse_args(argv)
    text = args.rbac.read_text(encoding="utf-8")
    if args.list_roles:
        print("\n".join(role_ids(text, "<AZURE_REFRESH_TOKEN_WRITER_ROLE_ID>")))
        return 0
    if not args.writer_role_id or not args.principal_id:
        parser.error("--writer-role-id and at least one --principal-id are required")
    print(condition(role_ids(text, args.writer_role_id), args.principal_id))
    return 0


if __name__ == "__main__":
    sys.exit(main())
