"""What the deployment sets agrees with what the app declares, and the runbook pastes in order.

Run by scripts/check_infra.sh (make check-infra) with the app's own Python (.venv): it imports shared.settings.

* **settings**: every setting of ``SETTINGS`` (shared/settings.py) is either fixed by the templates or never in
  Azure (both listed in infra/app-settings.json) or operator-settable, and an operator-settable one flows through
  every link: the env of each workflow job that runs ``azd provision`` (``NAME: ${{ vars.NAME }}``), then
  main.parameters.json (``${NAME}``, or ``${NAME=default}`` with SETTINGS' default), then a main.bicep parameter
  named after it (lowerCamelCase) whose default is SETTINGS' default, then ``syncSettings``, which function.bicep
  merges into the appsettings resource. Nothing else is set there, and every variable main.parameters.json reads
  is given by the workflow (else CI would deploy a different value than the azd environment holds);
* **bounds**: a parameter allows no more than the app accepts: @minValue/@maxValue are the app's range (whole
  numbers within it), @allowed its words or allowed values; a flag is 'true'/'false'. A setting whose default is
  a fraction is a string parameter: ARM has no fractional numbers, so the app's own check at start is its bound;
* **host.json**: Application Insights never samples the telemetry the alert rules read;
* **runbook** (docs/deploy.md): every variable a block uses was set by an earlier block; Python is the venv's;
  `az account set` comes first, provider registration before the region check (with `--runtime python`), the
  `application-insights` extension before a query that needs it; every timer is triggered; each numbered step
  says what to expect.

Usage: python scripts/check_deployment.py [--root DIR] [--infra DIR] [--workflows DIR]
Exits 1 and prints one line per problem.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.settings import SETTINGS, Setting  # noqa: E402 (the repository root is put on the path first)
from shared.sync.jobs import JOBS  # noqa: E402

# Variables azd itself gives main.parameters.json (the signed-in principal), never a workflow's.
AZD_PROVIDED = {"AZURE_PRINCIPAL_ID", "AZURE_PRINCIPAL_TYPE"}

_PARAM = re.compile(r"param (\w+) (\w+)(?: = (.+))?$")
_KEY = re.compile(r"^\s+([A-Za-z_][A-Za-z0-9_]*): (.+)$")
_PARAM_REF = re.compile(r"^(?:string\()?(\w+)\)?$")
_SUBSTITUTION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:=([^}]*))?\}")


@dataclass
class Param:
    """A Bicep parameter's type, default and value decorators."""

    type: str
    default: str | None
    min: int | None = None
    max: int | None = None
    allowed: list[str] = field(default_factory=list)


def parameters(text: str) -> dict[str, Param]:
    """Every ``param`` of a template, with the @minValue/@maxValue/@allowed written above it."""
    found: dict[str, Param] = {}
    pending: dict[str, Any] = {}
    lines = iter(text.splitlines())
    for line in lines:
        line = line.strip()
        if line.startswith(("@minValue(", "@maxValue(")):
            pending[line[1:4]] = int(line[line.index("(") + 1 : line.index(")")])
        elif line == "@allowed([":
            values = []
            for item in lines:
                if item.strip() == "])":
                    break
                values.append(item.strip().strip("'"))
            pending["allowed"] = values
        elif match := _PARAM.match(line):
            name, kind, default = match.groups()
            found[name] = Param(
                kind,
                None if default is None else default.strip().strip("'"),
                pending.get("min"),
                pending.get("max"),
                pending.get("allowed", []),
            )
            pending = {}
        elif line and not line.startswith(("@", "//")):
            pending = {}
    return found


def object_block(text: str, variable: str) -> dict[str, str] | None:
    """Keys of ``var <variable> = { ... }`` (one key a line) and the expression each is set to."""
    start = re.search(rf"^var {re.escape(variable)} = \{{$", text, re.M)
    if not start:
        return None
    keys: dict[str, str] = {}
    for line in text[start.end() :].splitlines()[1:]:
        if line.startswith("}"):
            return keys
        if match := _KEY.match(line):
            keys[match.group(1)] = match.group(2).strip()
    return keys


def camel(name: str) -> str:
    """The parameter name of an app setting: API_CORS_ORIGINS -> apiCorsOrigins."""
    first, *rest = name.lower().split("_")
    return first + "".join(word.capitalize() for word in rest if word)


def _is_flag(setting: Setting) -> bool:
    return getattr(setting.parse, "__name__", "") == "_flag"


def _is_fraction(setting: Setting) -> bool:
    bounds = setting.bounds
    if bounds is None:
        return False
    # A whole default fits an int parameter over the whole numbers of the range; a fractional one cannot.
    return not bounds.integer and not float(setting.default).is_integer()


def _kind(setting: Setting) -> str:
    """The Bicep type of an operator setting's parameter."""
    bounds = setting.bounds
    if bounds is not None and (bounds.allowed is not None or not _is_fraction(setting)):
        return "int"
    return "string"


def _sync_expression(setting: Setting) -> str:
    """How syncSettings sets it: numbers go to the app as the strings it parses."""
    param = camel(setting.name)
    return f"string({param})" if _kind(setting) == "int" else param


def suggested_param(setting: Setting) -> str:
    """The main.bicep parameter an operator setting needs, as text to paste."""
    meaning = setting.meaning.replace("'", "\\'")
    decorators = [f"@description('Optional. {meaning}')"]
    kind = _kind(setting)
    bounds = setting.bounds
    if setting.choices:
        decorators += ["@allowed([", *(f"  '{c}'" for c in setting.choices), "])"]
    elif _is_flag(setting):
        decorators += ["@allowed([", "  'true'", "  'false'", "])"]
    elif bounds is not None and bounds.allowed is not None:
        decorators += ["@allowed([", *(f"  {v}" for v in bounds.allowed), "])"]
    elif bounds is not None and kind == "int":
        decorators += [f"@minValue({math.ceil(bounds.low)})", f"@maxValue({math.floor(bounds.high)})"]
    if kind == "int":
        default = f" = {setting.default}" if setting.default else ""
    else:
        default = " = '" + setting.default.replace("'", "\\'") + "'"
    return "\n".join([*decorators, f"param {camel(setting.name)} {kind}{default}"])


def _expected_substitution(setting: Setting) -> str:
    return f"${{{setting.name}}}" if setting.default == "" else f"${{{setting.name}={setting.default}}}"


@dataclass
class Files:
    """The deployment files read, and where they are."""

    root: Path
    infra: Path
    workflows: Path

    def read(self, path: Path) -> str:
        return path.read_text(encoding="utf-8")

    @property
    def main(self) -> Path:
        return self.infra / "main.bicep"

    @property
    def function(self) -> Path:
        return self.infra / "app" / "function.bicep"


def classification(infra: Path) -> tuple[set[str], set[str]]:
    """(template, notInAzure) of infra/app-settings.json."""
    data = json.loads((infra / "app-settings.json").read_text(encoding="utf-8"))
    return set(data["template"]["values"]), set(data["notInAzure"]["values"])


def operator_settings(infra: Path) -> list[Setting]:
    """The settings an operator sets: every declared one not fixed by the templates nor absent from Azure."""
    template, not_in_azure = classification(infra)
    return [s for s in SETTINGS if s.name not in template and s.name not in not_in_azure]


def provisioning_jobs(workflows: Path) -> dict[str, dict[str, str]]:
    """The env of every workflow job that runs `azd provision`, by "file: job"."""
    jobs: dict[str, dict[str, str]] = {}
    for path in sorted(workflows.glob("*.y*ml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for job_id, job in (document.get("jobs") or {}).items():
            runs = " ".join(str(step.get("run", "")) for step in job.get("steps") or [])
            if "azd provision" in runs:
                env = {str(k): str(v) for k, v in (document.get("env") or {}).items()}
                env.update({str(k): str(v) for k, v in (job.get("env") or {}).items()})
                jobs[f"{path.name}: {job_id}"] = env
    return jobs


def check_settings(files: Files) -> list[str]:
    """Every declared setting is classified, and each operator-settable one flows through every link."""
    problems: list[str] = []
    main_text, function_text = files.read(files.main), files.read(files.function)
    params = parameters(main_text)
    sync = object_block(main_text, "syncSettings")
    fixed = object_block(function_text, "identitySettings")
    if sync is None or fixed is None:
        return ["main.bicep must hold `var syncSettings = {` and function.bicep `var identitySettings = {`"]
    if not re.search(r"appSettings:\s*syncSettings\b", main_text):
        problems.append("main.bicep must pass syncSettings to the function module as appSettings")
    if "properties: union(appSettings, identitySettings)" not in function_text:
        problems.append("function.bicep's appsettings resource must be exactly union(appSettings, identitySettings)")
    template, not_in_azure = classification(files.infra)
    declared = {s.name for s in SETTINGS}
    operators = operator_settings(files.infra)
    operator_names = {s.name for s in operators}
    given = json.loads(files.read(files.infra / "main.parameters.json")).get("parameters", {})
    jobs = provisioning_jobs(files.workflows)
    if not jobs:
        problems.append(f"{files.workflows.name}: no workflow job runs `azd provision`")

    for name in sorted(set(sync) & set(fixed)):
        problems.append(f"{name} is set both by main.bicep (syncSettings) and function.bicep (identitySettings)")
    for name in sorted((set(sync) | set(fixed)) - operator_names - template):
        where = "notInAzure" if name in not_in_azure else "neither SETTINGS nor infra/app-settings.json"
        problems.append(f"app setting {name} is set by the templates but is listed in {where}")
    for name in sorted(template - set(fixed)):
        problems.append(f"{name} is listed as template in infra/app-settings.json but function.bicep never sets it")
    for name in sorted(template & operator_names - set(fixed)):
        problems.append(f"{name} is a template setting but is set from a parameter")
    for name in sorted((template | not_in_azure) - declared):
        if name in not_in_azure:
            problems.append(f"infra/app-settings.json lists {name} as notInAzure, but SETTINGS does not declare it")

    for setting in operators:
        name, param_name = setting.name, camel(setting.name)
        hint = (
            f"operator setting {name} (shared/settings.py): wire it through, or list it under template or "
            "notInAzure in infra/app-settings.json"
        )
        if name in fixed:
            problems.append(f"{name} is set by function.bicep; list it under template in infra/app-settings.json")
            continue
        expression = sync.get(name)
        if expression is None:
            problems.append(
                f"{hint}; main.bicep: add `{name}: {_sync_expression(setting)}` to syncSettings and the parameter\n"
                + suggested_param(setting)
            )
        else:
            ref = _PARAM_REF.match(expression)
            if not ref or ref.group(1) != param_name:
                problems.append(f"main.bicep: syncSettings.{name} must be set from its own parameter {param_name}")
        param = params.get(param_name)
        if param is None:
            if expression is not None:
                problems.append(f"main.bicep: parameter {param_name} ({name}) is missing:\n{suggested_param(setting)}")
        elif param.default is not None:
            try:
                same = setting.parse(name, param.default) == setting.read({})
            except ValueError:
                same = False
            if not same:
                problems.append(
                    f"main.bicep: {param_name} defaults to {param.default!r}, the app to {setting.default!r} ({name})"
                )
        elif setting.default:
            problems.append(f"main.bicep: {param_name} needs the app's default {setting.default!r} ({name})")
        wanted = _expected_substitution(setting)
        value = (given.get(param_name) or {}).get("value")
        if value != wanted:
            problems.append(
                f'main.parameters.json: {param_name} must be {{"value": "{wanted}"}} (found {value!r}), so the '
                f"azd environment or repository variable {name} reaches it"
            )
        for job, env in jobs.items():
            if env.get(name) != f"${{{{ vars.{name} }}}}":
                problems.append(f"{job}: env needs `{name}: ${{{{ vars.{name} }}}}` (found {env.get(name)!r})")

    for param_name, entry in given.items():
        for variable, _default in _SUBSTITUTION.findall(str((entry or {}).get("value", ""))):
            if variable in AZD_PROVIDED:
                continue
            for job, env in jobs.items():
                if variable not in env:
                    problems.append(
                        f"{job}: main.parameters.json reads {variable} ({param_name}), which the job's env does not "
                        "set: CI would deploy another value than the azd environment holds"
                    )
    return problems


def check_bounds(files: Files) -> list[str]:
    """No parameter of an operator setting allows more than the app accepts."""
    problems: list[str] = []
    params = parameters(files.read(files.main))
    for setting in operator_settings(files.infra):
        param = params.get(camel(setting.name))
        if param is None:
            continue  # reported by check_settings
        where = f"main.bicep: {camel(setting.name)} ({setting.name})"
        bounds, choices = setting.bounds, setting.choices
        if choices is not None:
            if param.allowed != list(choices) or param.min is not None or param.max is not None:
                problems.append(f"{where} must allow exactly {list(choices)}, not {param.allowed}")
        elif _is_flag(setting):
            if param.type != "string" or param.allowed != ["true", "false"]:
                problems.append(f"{where} is a flag: a string parameter allowing exactly 'true' and 'false'")
        elif bounds is not None and bounds.allowed is not None:
            if param.allowed != [str(v) for v in bounds.allowed] or param.min is not None or param.max is not None:
                problems.append(f"{where} must allow exactly {list(bounds.allowed)}, not {param.allowed}")
        elif bounds is not None and _is_fraction(setting):
            if param.type != "string":
                problems.append(f"{where} takes fractions ({bounds.text}): a string parameter, checked by the app")
        elif bounds is not None:
            wanted = (math.ceil(bounds.low), math.floor(bounds.high))
            if param.type != "int" or (param.min, param.max) != wanted or param.allowed:
                problems.append(
                    f"{where} must be an int with @minValue({wanted[0]}) @maxValue({wanted[1]}), the app's range "
                    f"{bounds.text}; found {param.type} {param.min}..{param.max}"
                )
    return problems


# Application Insights telemetry types (host.json samplingSettings) by the table a query reads.
TELEMETRY_TYPES = {
    "traces": "Trace",
    "requests": "Request",
    "exceptions": "Exception",
    "dependencies": "Dependency",
    "customEvents": "Event",
    "pageViews": "PageView",
}


def alert_tables(alerts_text: str) -> set[str]:
    """The Application Insights tables the alert rules' queries read."""
    queries = re.findall(r"'''(.*?)'''", alerts_text, re.S)
    return {table for q in queries for table in TELEMETRY_TYPES if re.search(rf"\b{table}\b", q)}


def check_host(files: Files) -> list[str]:
    """The alert rules' inputs are never sampled away."""
    host = json.loads(files.read(files.root / "host.json"))
    sampling = ((host.get("logging") or {}).get("applicationInsights") or {}).get("samplingSettings") or {}
    tables = alert_tables(files.read(files.infra / "app" / "alerts.bicep"))
    if not tables:
        return ["infra/app/alerts.bicep: no query reads an Application Insights table"]
    if sampling.get("isEnabled") is False:
        return []
    excluded = {t.strip() for t in str(sampling.get("excludedTypes", "")).split(";") if t.strip()}
    return [
        f"host.json samples {TELEMETRY_TYPES[table]} telemetry, which the alert rules read ({table}): add it to "
        "samplingSettings.excludedTypes"
        for table in sorted(tables)
        if TELEMETRY_TYPES[table] not in excluded
    ]


# ---------------------------------------------------------------------------------------------------------------
# The runbook
# ---------------------------------------------------------------------------------------------------------------

# Variables a shell or a tool sets, never the runbook.
SHELL_VARIABLES = {"HOME", "PATH", "PWD", "USER", "RANDOM", "SECONDS", "REPLY", "PIPESTATUS"}
_ASSIGN = re.compile(r"(?:^|[\s;&|(])(?:export\s+|local\s+|readonly\s+)?([A-Za-z_][A-Za-z0-9_]*)=")
_FOR = re.compile(r"\bfor\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\b")
_READ = re.compile(r"\bread\s+(?:-\w+\s+)*([A-Za-z_][A-Za-z0-9_]*)")
_FUNCTION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(\)\s*\{", re.M)
_USE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


@dataclass
class Block:
    """One ```bash block of the runbook, with the numbered step it belongs to."""

    step: str
    line: int
    text: str


def runbook_blocks(markdown: str) -> Iterator[Block]:
    step = ""
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            step = line[3:].strip()
        if line.strip() == "```bash":
            start = i + 1
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            yield Block(step, start + 1, "\n".join(body))
        i += 1


def _code_only(text: str) -> str:
    """The block without comments and single-quoted strings (which the shell does not expand)."""
    out = []
    for line in text.splitlines():
        line = re.sub(r"'[^']*'", "''", line)
        line = re.sub(r"(^|\s)#.*$", r"\1", line)
        out.append(line)
    return "\n".join(out)


def _steps(markdown: str) -> Iterator[tuple[str, str]]:
    """(heading, body) of every numbered step (`## N. ...`)."""
    parts = re.split(r"^## ", markdown, flags=re.M)
    for part in parts[1:]:
        heading, _, body = part.partition("\n")
        if re.match(r"\d+\.", heading):
            yield heading.strip(), body


def check_runbook(root: Path) -> list[str]:
    """docs/deploy.md pastes in order, as far as text can tell."""
    path = root / "docs" / "deploy.md"
    markdown = path.read_text(encoding="utf-8")
    problems: list[str] = []
    defined: set[str] = set(SHELL_VARIABLES)
    first_az: str | None = None
    seen_register = seen_extension = False
    for block in runbook_blocks(markdown):
        code = _code_only(block.text)
        where = f"docs/deploy.md:{block.line} ({block.step})"
        syntax = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True, check=False)
        if syntax.returncode != 0:
            problems.append(f"{where}: not valid bash: {syntax.stderr.strip().splitlines()[-1]}")
        local = set(_FUNCTION.findall(code))
        for pattern in (_ASSIGN, _FOR, _READ):
            local.update(pattern.findall(code))
        # A function body may use its own positional parameters and variables assigned later in the block.
        for name in _USE.findall(code):
            if name not in defined and name not in local and not name.isdigit():
                problems.append(f"{where}: ${name} is used before any block sets it")
        defined |= local
        for line in code.splitlines():
            command = line.strip()
            if re.search(r"(^|[|;&]\s*|\$\(\s*|\b(?:sudo|exec|time)\s+)python3?(\s|$)", command):
                problems.append(f"{where}: `{command[:60]}` runs a bare python; use .venv/bin/python")
            for az in re.findall(r"(?:^|[\s|;&($])az\s+([a-z-]+(?:\s+[a-z-]+)?)", command):
                if first_az is None and not az.startswith(("login", "version")):
                    first_az = az
                    if not az.startswith("account set"):
                        problems.append(f"{where}: the first az command after `az login` must be `az account set`")
                if az.startswith("provider register"):
                    seen_register = True
                if az.startswith("extension add") and "application-insights" in command:
                    seen_extension = True
                if az.startswith("monitor app-insights") and not seen_extension:
                    problems.append(
                        f"{where}: `az monitor app-insights` needs `az extension add --name application-insights` first"
                    )
            if "list-flexconsumption-locations" in command:
                if not seen_register:
                    problems.append(f"{where}: register the resource providers before the region check")
                if "--runtime python" not in command:
                    problems.append(f"{where}: the region check must ask for `--runtime python`")
    triggered: set[str] = set()
    for block in runbook_blocks(markdown):
        if "admin/functions/" in block.text:
            for names in re.findall(r"\bfor\s+\w+\s+in\s+([^;\n]+)", block.text):
                triggered.update(names.split())
            triggered.update(re.findall(r"admin/functions/(\w+)", block.text))
    for job in JOBS:
        if job.name not in triggered:
            problems.append(f"docs/deploy.md never triggers {job.name} (the step that runs the timers once)")
    for heading, body in _steps(markdown):
        if "Expected" not in body:
            problems.append(f"docs/deploy.md: step '{heading}' does not say what to expect (a line with 'Expected')")
    return problems


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--infra", type=Path, default=None)
    parser.add_argument("--workflows", type=Path, default=None)
    args = parser.parse_args(list(argv) if argv is not None else None)
    root = args.root.resolve()
    infra = (args.infra or root / "infra").resolve()
    files = Files(root, infra, (args.workflows or root / ".github" / "workflows").resolve())
    problems: list[str] = []
    for name, check in (
        ("settings", lambda: check_settings(files)),
        ("bounds", lambda: check_bounds(files)),
        ("host", lambda: check_host(files)),
        ("runbook", lambda: check_runbook(root)),
    ):
        found = check()
        problems += found
        for line in found:
            print(f"deployment ({name}): {line}")
    print(f"deployment: {len(SETTINGS)} setting(s) declared, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
