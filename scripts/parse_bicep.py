"""Parse every Bicep file under an infra directory and check what a compiler would catch first.

No Bicep compiler can be installed where this runs, so this stands in for `bicep build` as far
as a parser can: every file must parse with pycep (the parser checkov uses; checkov itself only
counts a parse failure and still exits 0), and the parsed templates must agree with each other:

* every parameter has a description starting "Required. " or "Optional. ";
* every local module path exists; a module call passes only parameters the module declares and
  every parameter the module requires; every `<module>.outputs.<name>` names a declared output;
* loadJsonContent() files exist and parse, and `abbrs.<key>` names a key of abbreviations.json;
* main.parameters.json sets only declared parameters and every parameter without a default;
* app settings: none of the forbidden names appear as a key, and every setting the app reads
  (the settings table of docs/architecture.md, with --settings-doc) is set somewhere;
* Flex Consumption (infra/flex-consumption.json): main.bicep allows exactly the listed regions for `location`;
  no listed Flex-unsupported app setting is a key anywhere and no listed siteConfig property is set;
* Key Vault: no template writes a secret (a provision must never replace the refresh token the app rotated);
  the app identity reads the vault as Key Vault Secrets User and writes only through the refresh-token writer
  role, a custom role that can get and set a secret's value and nothing else, assigned on a secret resource;
* roles: every role assignment (principal, role, kind of scope) is a row of the role table of infra/README.md
  and every row is assigned, so a grant broader than the table states (a queue role on the whole account, say)
  fails, and so does one the table does not explain.

Usage: python scripts/parse_bicep.py INFRA_DIR [--settings-doc docs/architecture.md]
Exits 1 and prints one line per problem when anything is wrong.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pycep import BicepParser

DESCRIPTION_PREFIXES = ("Required. ", "Optional. ")

# Keys that must never be app settings in Azure: the "notInAzure" list of infra/app-settings.json (devhost-only
# settings, connection strings that would be keys instead of the identity settings, the Functions runtime), and
# FUNCTIONS_EXTENSION_VERSION, which Flex Consumption rejects.
APP_SETTINGS_FILE = "app-settings.json"
ALWAYS_FORBIDDEN = {"FUNCTIONS_EXTENSION_VERSION"}

# What Flex Consumption rejects or ignores: its regions, the app settings it deprecates and the siteConfig
# properties it rejects (ARM 400, code 51021) live in infra/flex-consumption.json, each list with its source and
# how complete it is. Setting one fails `azd up` while the function app is created, or is silently ignored.
FLEX_FILE = "flex-consumption.json"

# Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles) by the
# variable name the templates give them: a role id pasted under the wrong name grants the wrong rights silently.
BUILT_IN_ROLES = {
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageBlobDataContributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "keyVaultSecretsOfficer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
}
_ROLE_ID = re.compile(r"Microsoft\.Authorization/roleDefinitions'?\s*,\s*'([0-9a-f-]{36})'")

# The role table of infra/README.md names roles, principals and scopes in words; these are the words for the
# templates' symbols. A role variable or principal parameter missing here fails the check until it is added.
ROLE_NAMES = {
    "storageBlobDataOwner": "Storage Blob Data Owner",
    "storageBlobDataContributor": "Storage Blob Data Contributor",
    "storageQueueDataContributor": "Storage Queue Data Contributor",
    "storageTableDataContributor": "Storage Table Data Contributor",
    "monitoringMetricsPublisher": "Monitoring Metrics Publisher",
    "keyVaultSecretsOfficer": "Key Vault Secrets Officer",
    "keyVaultSecretsUser": "Key Vault Secrets User",
    "refreshTokenWriter": "Partner Center refresh token writer",
}
PRINCIPAL_NAMES = {
    "appPrincipalId": "app identity",
    "deploymentPrincipalId": "deployment identity",
    "userPrincipalId": "deployer",
}
SCOPE_NAMES = {
    "Microsoft.Storage/storageAccounts": "storage account",
    "Microsoft.Storage/storageAccounts/queueServices/queues": "queue",
    "Microsoft.Storage/storageAccounts/blobServices/containers": "blob container",
    "Microsoft.Storage/storageAccounts/tableServices/tables": "table",
    "Microsoft.KeyVault/vaults": "key vault",
    "Microsoft.KeyVault/vaults/secrets": "secret",
    "Microsoft.Insights/components": "Application Insights",
}
ROLES_DOC = "README.md"
# What the custom refresh-token writer may do: read and write a secret's value. Never delete, purge, or list.
SECRET_WRITER_DATA_ACTIONS = {
    "Microsoft.KeyVault/vaults/secrets/getSecret/action",
    "Microsoft.KeyVault/vaults/secrets/setSecret/action",
}


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict inside a parsed template, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def accessor_chain(node: dict[str, Any]) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"] when node is a chain of plain property accessors."""
    operator = node.get("operator")
    if not isinstance(operator, dict) or operator.get("type") != "property_accessor":
        return None
    left = operator["operands"]["operand_1"]
    right = operator["operands"]["operand_2"]
    if not isinstance(left, str):
        return None
    if isinstance(right, str):
        return [left, right]
    if isinstance(right, dict):
        rest = accessor_chain(right)
        return [left, *rest] if rest else None
    return None


INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def strings(node: Any) -> Iterator[str]:
    """Every string value inside a parsed template."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def chains(template: dict[str, Any]) -> Iterator[list[str]]:
    """Dotted references `a.b.c`, from accessor nodes and from ${...} inside strings."""
    for node in walk(template):
        chain = accessor_chain(node)
        if chain:
            yield chain
    for text in strings(template):
        for expression in INTERPOLATION.findall(text):
            for dotted in DOTTED.findall(expression):
                yield dotted.split(".")


def description_of(param: dict[str, Any]) -> str | None:
    for decorator in param.get("decorators") or []:
        if decorator.get("type") == "description":
            return str(decorator.get("argument"))
    return None


def module_body(module: dict[str, Any]) -> dict[str, Any]:
    """The module's { name, params, ... } object, unwrapping if/for wrappers."""
    body = module.get("config") or {}
    while isinstance(body.get("config"), dict) and ("condition" in body or "loop_type" in body):
        body = body["config"]
    return body


def settings_from_doc(doc: Path) -> set[str]:
    """Setting names in the first column of the '## Settings' table."""
    names: set[str] = set()
    in_section = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            in_section = line.lower().startswith("## settings")
            continue
        if in_section and line.startswith("|"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", first_cell))
    return names


class Checker:
    def __init__(self, infra: Path) -> None:
        self.infra = infra
        self.errors: list[str] = []
        self.templates: dict[Path, dict[str, Any]] = {}

    def error(self, path: Path, message: str) -> None:
        self.errors.append(f"{path.relative_to(self.infra.parent)}: {message}")

    def parse_all(self) -> None:
        files = sorted(self.infra.rglob("*.bicep"))
        if not files:
            self.errors.append(f"{self.infra}: no .bicep files found")
        parser = BicepParser()
        for path in files:
            try:
                self.templates[path.resolve()] = parser.parse(file_path=path)
            except Exception as exc:  # pycep raises lark and ValueError subclasses alike
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self.error(path, f"parse error: {first_line}")

    def check_descriptions(self) -> None:
        for path, template in self.templates.items():
            for name, param in (template.get("parameters") or {}).items():
                description = description_of(param)
                if not description or not description.startswith(DESCRIPTION_PREFIXES):
                    self.error(path, f"param {name}: @description must start with 'Required. ' or 'Optional. '")

    def check_modules(self) -> None:
        for path, template in self.templates.items():
            modules = template.get("modules") or {}
            targets: dict[str, dict[str, Any]] = {}
            for symbol, module in modules.items():
                if module.get("type") != "local":
                    continue
                target_path = (path.parent / module["detail"]["path"]).resolve()
                target = self.templates.get(target_path)
                if target is None:
                    if not target_path.exists():
                        self.error(path, f"module {symbol}: {module['detail']['path']} does not exist")
                    continue  # exists but failed to parse: already reported
                targets[symbol] = target
                declared = target.get("parameters") or {}
                given = module_body(module).get("params") or {}
                for name in given:
                    if name not in declared:
                        self.error(path, f"module {symbol}: passes unknown param {name}")
                for name, param in declared.items():
                    if param.get("default") is None and name not in given:
                        self.error(path, f"module {symbol}: misses required param {name}")
            for chain in chains(template):
                if len(chain) >= 3 and chain[0] in targets and chain[1] == "outputs":
                    if chain[2] not in (targets[chain[0]].get("outputs") or {}):
                        self.error(path, f"{chain[0]}.outputs.{chain[2]} is not an output of that module")

    def check_json_content(self) -> None:
        for path, template in self.templates.items():
            loaded: dict[str, Any] = {}
            for symbol, variable in (template.get("variables") or {}).items():
                value = variable.get("value")
                function = value.get("function") if isinstance(value, dict) else None
                if not isinstance(function, dict) or function.get("type") != "load_json_content":
                    continue
                json_path = path.parent / function["parameters"]["file_path"]
                try:
                    loaded[symbol] = json.loads(json_path.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    self.error(path, f"loadJsonContent({json_path.name}): {exc}")
            for chain in chains(template):
                if chain[0] in loaded and isinstance(loaded[chain[0]], dict):
                    if chain[1] not in loaded[chain[0]]:
                        self.error(path, f"{chain[0]}.{chain[1]} is not a key of the loaded JSON")

    def check_parameters_file(self) -> None:
        main = (self.infra / "main.bicep").resolve()
        parameters_file = self.infra / "main.parameters.json"
        if main not in self.templates or not parameters_file.exists():
            return
        try:
            given = json.loads(parameters_file.read_text(encoding="utf-8")).get("parameters", {})
        except ValueError as exc:
            self.error(parameters_file, f"invalid JSON: {exc}")
            return
        declared = self.templates[main].get("parameters") or {}
        for name in given:
            if name not in declared:
                self.error(parameters_file, f"sets {name}, which main.bicep does not declare")
        for name, param in declared.items():
            if param.get("default") is None and name not in given:
                self.error(parameters_file, f"misses {name}, which has no default in main.bicep")

    def setting_keys(self) -> set[str]:
        keys: set[str] = set()
        for template in self.templates.values():
            for node in walk(template):
                keys.update(k for k in node if isinstance(k, str))
                name = node.get("name")
                if isinstance(name, str) and "value" in node:
                    keys.add(name)  # [{ name: 'X', value: ... }] style settings
        return keys

    def check_role_ids(self) -> None:
        """Every role definition id assigned to a variable matches the built-in role that variable names."""
        for path in self.templates:
            for line in path.read_text(encoding="utf-8").splitlines():
                found = _ROLE_ID.search(line)
                match = re.match(r"\s*var\s+(\w+)\s*=", line)
                if not found or not match:
                    continue
                name, role_id = match.group(1), found.group(1)
                if name not in BUILT_IN_ROLES:
                    self.error(path, f"role {name}: not a known built-in role name (add it to BUILT_IN_ROLES)")
                elif BUILT_IN_ROLES[name] != role_id:
                    self.error(path, f"role {name}: id {role_id} is not that role's ({BUILT_IN_ROLES[name]})")

    def load_flex(self) -> dict[str, Any]:
        """infra/flex-consumption.json, or {} (with a problem reported) when it is missing or malformed."""
        path = self.infra / FLEX_FILE
        try:
            flex = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self.errors.append(f"{self.infra.name}/{FLEX_FILE}: {exc}")
            return {}
        for section in ("regions", "appSettings", "siteConfig"):
            entry = flex.get(section)
            if not isinstance(entry, dict) or not entry.get("source") or not entry.get("values"):
                self.errors.append(f"{self.infra.name}/{FLEX_FILE}: {section} needs a source and values")
        return flex if isinstance(flex, dict) else {}

    def not_in_azure(self) -> set[str]:
        """The settings infra/app-settings.json says never exist in Azure."""
        try:
            data = json.loads((self.infra / APP_SETTINGS_FILE).read_text(encoding="utf-8"))
            return set(data["notInAzure"]["values"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.errors.append(f"{self.infra.name}/{APP_SETTINGS_FILE}: needs notInAzure.values ({exc})")
            return set()

    def check_settings(self, doc: Path | None, flex: dict[str, Any]) -> None:
        keys = self.setting_keys()
        local_only = self.not_in_azure()
        forbidden_settings = local_only | ALWAYS_FORBIDDEN
        for forbidden in sorted(forbidden_settings & keys):
            self.errors.append(f"{self.infra.name}: app setting {forbidden} must not be set in Azure")
        unsupported_settings = set((flex.get("appSettings") or {}).get("values") or ())
        for unsupported in sorted((unsupported_settings - forbidden_settings) & keys):
            self.errors.append(f"{self.infra.name}: app setting {unsupported} is not supported on Flex Consumption")
        rejected = set((flex.get("siteConfig") or {}).get("values") or ())
        for path, name in self.site_config_properties():
            if name in rejected:
                self.error(path, f"siteConfig.{name} is rejected by Flex Consumption (ARM 400, code 51021)")
        if doc is None:
            return
        if not doc.exists():
            self.errors.append(f"{doc}: settings document not found")
            return
        wanted = settings_from_doc(doc) - local_only
        if not wanted:
            self.errors.append(f"{doc}: no settings table found")
        for missing in sorted(wanted - keys):
            self.errors.append(f"{self.infra.name}: app setting {missing} (docs settings table) is never set")

    def site_config_properties(self) -> Iterator[tuple[Path, str]]:
        """(file, property) for every key of every `siteConfig: {...}` object."""
        for path, template in self.templates.items():
            for node in walk(template):
                site_config = node.get("siteConfig")
                if isinstance(site_config, dict):
                    yield from ((path, key) for key in site_config if isinstance(key, str))

    def check_location(self, flex: dict[str, Any]) -> None:
        """main.bicep's `location` allows exactly the Flex Consumption regions of flex-consumption.json."""
        main = (self.infra / "main.bicep").resolve()
        if main not in self.templates:
            return
        regions = set((flex.get("regions") or {}).get("values") or ())
        location = (self.templates[main].get("parameters") or {}).get("location")
        if location is None:
            self.error(main, "param location is missing")
            return
        allowed = next(
            (d.get("argument") for d in location.get("decorators") or [] if d.get("type") == "allowed"), None
        )
        if not isinstance(allowed, list):
            self.error(main, f"param location: @allowed must list the Flex Consumption regions of {FLEX_FILE}")
            return
        for extra in sorted(set(allowed) - regions):
            self.error(main, f"param location: {extra} is not a Flex Consumption region ({FLEX_FILE})")
        for missing in sorted(regions - set(allowed)):
            self.error(main, f"param location: @allowed misses the Flex Consumption region {missing} ({FLEX_FILE})")

    def role_assignments(self) -> Iterator[tuple[Path, str, dict[str, Any], str | None]]:
        """(file, name, body, scope resource type) of every role assignment of every template."""
        for path, template in self.templates.items():
            resources = {name: resource_body(r) | {"_": r} for name, r in (template.get("resources") or {}).items()}
            for name, body in resources.items():
                if body["_"].get("type") != "Microsoft.Authorization/roleAssignments":
                    continue
                scope = body.get("scope")
                scope_type = (
                    resources[scope]["_"].get("type") if isinstance(scope, str) and scope in resources else None
                )
                yield path, name, body, scope_type

    def check_key_vault(self) -> None:
        """No secret is written by a template; the app reads the vault and may only get and set one secret."""
        granted: set[str] = set()
        for path, template in self.templates.items():
            for name, resource in (template.get("resources") or {}).items():
                if resource.get("type") == "Microsoft.KeyVault/vaults/secrets" and not resource.get("existing"):
                    self.error(
                        path,
                        f"resource {name}: templates must not write secrets (a provision would replace "
                        "the refresh token the app rotated); reference them with `existing`",
                    )
                if resource.get("type") == "Microsoft.Authorization/roleDefinitions":
                    self.check_secret_writer(path, name, resource_body(resource))
        for path, name, body, scope_type in self.role_assignments():
            properties = body.get("properties") or {}
            if properties.get("principalId") != "appPrincipalId":
                continue
            role = properties.get("roleDefinitionId")
            if role == "keyVaultSecretsOfficer":
                self.error(
                    path,
                    f"resource {name}: the app identity never gets Key Vault Secrets Officer (it could delete and "
                    "purge secrets); it writes the refresh token through the refreshTokenWriter role",
                )
            if role == "refreshTokenWriter" and scope_type != "Microsoft.KeyVault/vaults/secrets":
                self.error(
                    path,
                    f"resource {name}: the app identity gets the refresh-token writer role only on the "
                    "refresh-token secret, not on the vault",
                )
            if role == "keyVaultSecretsUser" and scope_type != "Microsoft.KeyVault/vaults":
                self.error(path, f"resource {name}: the app identity's Key Vault Secrets User belongs on the vault")
            if role in ("refreshTokenWriter", "keyVaultSecretsUser"):
                granted.add(f"{role} on {scope_type}")

        for wanted in (
            "keyVaultSecretsUser on Microsoft.KeyVault/vaults",
            "refreshTokenWriter on Microsoft.KeyVault/vaults/secrets",
        ):
            if wanted not in granted:
                self.errors.append(f"{self.infra.name}: the app identity needs {wanted.replace(' on ', ' on a ')}")

    def check_secret_writer(self, path: Path, name: str, body: dict[str, Any]) -> None:
        """A custom role of the templates may get and set a secret's value, and do nothing else."""
        permissions = (body.get("properties") or {}).get("permissions") or []
        for permission in permissions:
            actions = set(permission.get("actions") or []) | set(permission.get("notActions") or [])
            data_actions = set(permission.get("dataActions") or [])
            if actions:
                self.error(path, f"role definition {name}: no control-plane actions ({sorted(actions)})")
            extra = data_actions - SECRET_WRITER_DATA_ACTIONS
            if extra:
                self.error(path, f"role definition {name}: only get and set a secret's value, not {sorted(extra)}")
        if not permissions:
            self.error(path, f"role definition {name}: states no permissions")

    def check_roles(self) -> None:
        """Every role assignment is a row of infra/README.md's role table, and every row is assigned."""
        doc = self.infra / ROLES_DOC
        if not doc.exists():
            self.errors.append(f"{self.infra.name}/{ROLES_DOC}: missing (its role table lists every role)")
            return
        listed = Counter(roles_from_doc(doc.read_text(encoding="utf-8")))
        if not listed:
            self.errors.append(f"{self.infra.name}/{ROLES_DOC}: no role table (| principal | role | scope | why |)")
        assigned: Counter[tuple[str, str, str]] = Counter()
        for path, name, body, scope_type in self.role_assignments():
            properties = body.get("properties") or {}
            principal = PRINCIPAL_NAMES.get(str(properties.get("principalId")))
            role = ROLE_NAMES.get(str(properties.get("roleDefinitionId")))
            if scope_type:
                scope = SCOPE_NAMES.get(scope_type)
            else:  # no `scope:` is the deployment's own resource group; an unresolved one cannot be named
                scope = "resource group" if "scope" not in body else None
            if principal is None or role is None or scope is None:
                self.error(
                    path,
                    f"role assignment {name}: principal {properties.get('principalId')!r}, role "
                    f"{properties.get('roleDefinitionId')!r} or scope {body.get('scope')!r} has no name for the role "
                    "table (a literal or a loop cannot be checked: one resource per assignment, named variables)",
                )
                continue
            assigned[(principal, role, scope)] += 1
        for (principal, role, scope), count in sorted((assigned - listed).items()):
            self.errors.append(
                f"{self.infra.name}: {principal} gets {role} on a {scope}"
                f"{f' ({count} more times)' if count > 1 else ''}, which the role table of {ROLES_DOC} does not "
                "list: a broader or new grant; narrow it or add the row with its reason"
            )
        for (principal, role, scope), count in sorted((listed - assigned).items()):
            self.errors.append(
                f"{self.infra.name}/{ROLES_DOC}: the role table lists {role} on a {scope} for {principal}"
                f"{f' ({count} more times)' if count > 1 else ''}, which no template assigns"
            )


def roles_from_doc(markdown: str) -> list[tuple[str, str, str]]:
    """(principal, role, scope kind) of each row of the `| principal | role | scope | why |` table."""
    rows: list[tuple[str, str, str]] = []
    in_table = False
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) >= 3 and [c.lower() for c in cells[:3]] == ["principal", "role", "scope"]:
            in_table = True
            continue
        if not in_table:
            continue
        if not cells:
            break
        if set(cells[0]) <= {"-", ":"}:
            continue
        principal, role, scope = (_plain(cell) for cell in cells[:3])
        rows.append((principal, role, scope))
    return rows


def _plain(cell: str) -> str:
    """A table cell's words before any code span or parenthesis: "queue `rated-ingest`" -> "queue"."""
    return re.split(r"[`(]", cell, maxsplit=1)[0].replace("*", "").strip()


def resource_body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's { name, scope, properties, ... } object, unwrapping if/for wrappers."""
    body = resource.get("config") or {}
    while isinstance(body.get("config"), dict) and ("condition" in body or "loop_type" in body):
        body = body["config"]
    return dict(body)


def main(argv: list[str] | None = None) -> int:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("infra", type=Path)
    arguments.add_argument("--settings-doc", type=Path, default=None)
    options = arguments.parse_args(argv)

    checker = Checker(options.infra.resolve())
    checker.parse_all()
    checker.check_descriptions()
    checker.check_modules()
    checker.check_json_content()
    checker.check_parameters_file()
    checker.check_role_ids()
    flex = checker.load_flex()
    checker.check_settings(options.settings_doc, flex)
    checker.check_location(flex)
    checker.check_key_vault()
    checker.check_roles()

    for line in checker.errors:
        print(f"bicep: {line}")
    print(f"bicep: parsed {len(checker.templates)} file(s), {len(checker.errors)} problem(s)")
    return 1 if checker.errors else 0


if __name__ == "__main__":
    sys.exit(main())
