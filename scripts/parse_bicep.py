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
  the app identity reads the vault as Key Vault Secrets User and holds Key Vault Secrets Officer only on a
  secret resource, never on the vault.

Usage: python scripts/parse_bicep.py INFRA_DIR [--settings-doc docs/architecture.md]
Exits 1 and prints one line per problem when anything is wrong.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pycep import BicepParser

DESCRIPTION_PREFIXES = ("Required. ", "Optional. ")

# Keys that must never be app settings in Azure: the first two are rejected by (or meaningless on)
# Flex Consumption, LOCAL_FUNCTION_KEY is devhost-only, and a plain USAGE_STORAGE or
# AzureWebJobsStorage would be a connection string (a key) instead of the identity settings.
FORBIDDEN_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "LOCAL_FUNCTION_KEY",
    "USAGE_STORAGE",
    "AzureWebJobsStorage",
}

# What Flex Consumption rejects or ignores: its regions, the app settings it deprecates and the siteConfig
# properties it rejects (ARM 400, code 51021) live in infra/flex-consumption.json, each list with its source and
# how complete it is. Setting one fails `azd up` while the function app is created, or is silently ignored.
FLEX_FILE = "flex-consumption.json"

# Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles) by the
# variable name the templates give them: a role id pasted under the wrong name grants the wrong rights silently.
BUILT_IN_ROLES = {
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageQueueDataContributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "monitoringMetricsPublisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "keyVaultSecretsOfficer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
}
_ROLE_ID = re.compile(r"Microsoft\.Authorization/roleDefinitions'?\s*,\s*'([0-9a-f-]{36})'")

# Settings of the architecture table that are local-only by design (see FORBIDDEN_SETTINGS): in Azure the
# runtime is functionAppConfig.runtime and the host storage is the identity-based AzureWebJobsStorage__*.
LOCAL_ONLY_SETTINGS = {"LOCAL_FUNCTION_KEY", "USAGE_STORAGE", "FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}


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

    def check_settings(self, doc: Path | None, flex: dict[str, Any]) -> None:
        keys = self.setting_keys()
        for forbidden in sorted(FORBIDDEN_SETTINGS & keys):
            self.errors.append(f"{self.infra.name}: app setting {forbidden} must not be set in Azure")
        unsupported_settings = set((flex.get("appSettings") or {}).get("values") or ())
        for unsupported in sorted((unsupported_settings - FORBIDDEN_SETTINGS) & keys):
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
        wanted = settings_from_doc(doc) - LOCAL_ONLY_SETTINGS
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

    def check_key_vault(self) -> None:
        """No secret is written by a template; the app reads the vault and may write only a secret resource."""
        granted: set[str] = set()
        for path, template in self.templates.items():
            resources = {name: resource_body(r) | {"_": r} for name, r in (template.get("resources") or {}).items()}
            for name, body in resources.items():
                resource = body["_"]
                if resource.get("type") == "Microsoft.KeyVault/vaults/secrets" and not resource.get("existing"):
                    self.error(
                        path,
                        f"resource {name}: templates must not write secrets (a provision would replace "
                        "the refresh token the app rotated); reference them with `existing`",
                    )
            for name, body in resources.items():
                if body["_"].get("type") != "Microsoft.Authorization/roleAssignments":
                    continue
                properties = body.get("properties") or {}
                if properties.get("principalId") != "appPrincipalId":
                    continue
                role = properties.get("roleDefinitionId")
                scope = body.get("scope")
                scope_type = (
                    resources[scope]["_"].get("type") if isinstance(scope, str) and scope in resources else None
                )
                if role == "keyVaultSecretsOfficer" and scope_type != "Microsoft.KeyVault/vaults/secrets":
                    self.error(
                        path,
                        f"resource {name}: the app identity gets Key Vault Secrets Officer only on "
                        "the refresh-token secret, not on the vault",
                    )
                if role in ("keyVaultSecretsOfficer", "keyVaultSecretsUser"):
                    granted.add(f"{role} on {scope_type}")
                if role == "keyVaultSecretsUser" and scope_type != "Microsoft.KeyVault/vaults":
                    self.error(path, f"resource {name}: the app identity's Key Vault Secrets User belongs on the vault")

        for wanted in (
            "keyVaultSecretsUser on Microsoft.KeyVault/vaults",
            "keyVaultSecretsOfficer on Microsoft.KeyVault/vaults/secrets",
        ):
            if wanted not in granted:
                self.errors.append(f"{self.infra.name}: the app identity needs {wanted.replace(' on ', ' on a ')}")


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

    for line in checker.errors:
        print(f"bicep: {line}")
    print(f"bicep: parsed {len(checker.templates)} file(s), {len(checker.errors)} problem(s)")
    return 1 if checker.errors else 0


if __name__ == "__main__":
    sys.exit(main())
