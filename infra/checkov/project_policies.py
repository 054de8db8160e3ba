"""Project-specific checkov policies for the Bicep in infra/.

Checkov's built-in Bicep/ARM checks do not cover the rules this deployment relies on (identity
instead of keys, RBAC-only Key Vault, explicit role assignment principal types), so they are
stated here and loaded with ``checkov --external-checks-dir infra/checkov``.

Checkov hands a check the body of a resource; for a conditional (``if``) or looped (``for``)
resource that body is wrapped in another ``config`` level, which ``_body`` unwraps.
"""

from __future__ import annotations

from typing import Any

from checkov.bicep.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult


def _body(conf: dict[str, Any]) -> dict[str, Any]:
    """Return the resource body, unwrapping the extra level pycep adds for if/for resources."""
    while isinstance(conf.get("config"), dict) and ("condition" in conf or "loop_type" in conf):
        conf = conf["config"]
    return conf


def _get(conf: dict[str, Any], path: str) -> Any:
    """Value at a slash-separated path of the resource body, or None."""
    node: Any = _body(conf)
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _is(value: Any, expected: bool) -> bool:
    """A literal boolean: an expression or parameter reference does not count."""
    return value is expected


class _LiteralBoolCheck(BaseResourceCheck):
    """Passes only when ``path`` holds the literal ``expected``."""

    def __init__(self, *, id: str, name: str, resource: str, path: str, expected: bool) -> None:
        self.inspected_path = path
        self.expected = expected
        super().__init__(
            name=name, id=id, categories=(CheckCategories.GENERAL_SECURITY,), supported_resources=(resource,)
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        return CheckResult.PASSED if _is(_get(conf, self.inspected_path), self.expected) else CheckResult.FAILED

    def get_evaluated_keys(self) -> list[str]:
        return [self.inspected_path]


class StorageNetworkAclsExplicit(BaseResourceCheck):
    """The firewall is stated, not inherited from a platform default."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure the storage account states networkAcls (defaultAction and bypass) explicitly",
            id="CKV_PCU_3",
            categories=(CheckCategories.NETWORKING,),
            supported_resources=("Microsoft.Storage/storageAccounts",),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        acls = _get(conf, "properties/networkAcls")
        if isinstance(acls, dict) and "defaultAction" in acls and "bypass" in acls:
            return CheckResult.PASSED
        return CheckResult.FAILED


class RoleAssignmentDeterministic(BaseResourceCheck):
    """Role assignments are named with guid(...) and state their principalType."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure role assignments are named with guid() and set principalType",
            id="CKV_PCU_6",
            categories=(CheckCategories.IAM,),
            supported_resources=("Microsoft.Authorization/roleAssignments",),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        name = _get(conf, "name")
        named_by_guid = isinstance(name, dict) and name.get("function", {}).get("type") == "guid"
        has_type = _get(conf, "properties/principalType") not in (None, "")
        return CheckResult.PASSED if named_by_guid and has_type else CheckResult.FAILED


class FunctionAppUserAssignedIdentity(BaseResourceCheck):
    """The app runs as a user-assigned identity, which also resolves its Key Vault references."""

    def __init__(self) -> None:
        super().__init__(
            name="Ensure the function app uses a user-assigned identity, also for Key Vault references",
            id="CKV_PCU_7",
            categories=(CheckCategories.IAM,),
            supported_resources=("Microsoft.Web/sites",),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        identity_type = _get(conf, "identity/type")
        kv_identity = _get(conf, "properties/keyVaultReferenceIdentity")
        if identity_type == "UserAssigned" and kv_identity not in (None, ""):
            return CheckResult.PASSED
        return CheckResult.FAILED


storage_shared_key = _LiteralBoolCheck(
    id="CKV_PCU_1",
    name="Ensure the storage account disables shared key access (identity-based access only)",
    resource="Microsoft.Storage/storageAccounts",
    path="properties/allowSharedKeyAccess",
    expected=False,
)
storage_blob_public = _LiteralBoolCheck(
    id="CKV_PCU_2",
    name="Ensure the storage account disallows anonymous blob access",
    resource="Microsoft.Storage/storageAccounts",
    path="properties/allowBlobPublicAccess",
    expected=False,
)
storage_network_acls = StorageNetworkAclsExplicit()
app_insights_local_auth = _LiteralBoolCheck(
    id="CKV_PCU_4",
    name="Ensure Application Insights disables local (instrumentation key) authentication",
    resource="Microsoft.Insights/components",
    path="properties/DisableLocalAuth",
    expected=True,
)
key_vault_rbac = _LiteralBoolCheck(
    id="CKV_PCU_5",
    name="Ensure the key vault uses Azure RBAC instead of access policies",
    resource="Microsoft.KeyVault/vaults",
    path="properties/enableRbacAuthorization",
    expected=True,
)
role_assignment_deterministic = RoleAssignmentDeterministic()
function_app_identity = FunctionAppUserAssignedIdentity()
