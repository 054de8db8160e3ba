#!/usr/bin/env bash
# Static checks of the deployment files, runnable offline (no Bicep compiler exists here):
#   1. every infra/**/*.bicep parses (pycep), the templates agree, the role table of infra/README.md is exactly
#      what they assign (scripts/parse_bicep.py);
#   2. every app setting of shared/settings.py is fixed by the templates or flows from a repository/azd variable
#      through the workflow, main.parameters.json and a bounded main.bicep parameter; host.json never samples
#      what the alerts read; the runbook pastes in order (scripts/check_deployment.py, with the app's .venv);
#   3. the deployment package, rebuilt as the pinned azd builds it, is exactly the app (scripts/package_app.py);
#   4. checkov --framework bicep, with the project policies in infra/checkov, finds nothing;
#   5. zizmor --offline and the GitHub workflow JSON schema accept .github/workflows;
#   6. infra/*.json and azure.yaml are well-formed.
# Every step runs even when an earlier one fails; the exit code is 1 if any failed.
#
# Usage: scripts/check_infra.sh [INFRA_DIR [WORKFLOWS_DIR]]
#   defaults: <repo>/infra and <repo>/.github/workflows
# The tools live in their own virtual environment, .venv-infra (override with INFRA_VENV),
# built from requirements-infra.txt when missing or when that file changed. Step 2 imports the app's settings
# and runs with the app's Python (APP_PYTHON, default <repo>/.venv/bin/python, which `make check-infra` builds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="$(cd "${1:-$ROOT/infra}" && pwd)"
WORKFLOWS="$(cd "${2:-$ROOT/.github/workflows}" && pwd)"
VENV="${INFRA_VENV:-$ROOT/.venv-infra}"
REQUIREMENTS="$ROOT/requirements-infra.txt"
STAMP="$VENV/.requirements-infra.sha256"

ensure_venv() {
    local wanted python
    wanted="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
    if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$wanted" ]]; then
        return 0
    fi
    python="$(command -v python3.11 || command -v python3)"
    echo "check_infra: building $VENV from requirements-infra.txt (one-off, about a minute)"
    "$python" -m venv --clear "$VENV"
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" \
        > "$VENV/install.log" 2>&1; then
        tail -n 30 "$VENV/install.log"
        echo "check_infra: installing requirements-infra.txt failed (log: $VENV/install.log)"
        return 1
    fi
    echo "$wanted" > "$STAMP"
}

# Two checks started together (parallel test runs) must not build the same venv at once.
LOCK="${TMPDIR:-/tmp}/check_infra.$(printf '%s' "$VENV" | sha256sum | cut -c1-16).lock"
exec 9> "$LOCK"
flock 9
ensure_venv
flock -u 9

PY="$VENV/bin/python"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
failed=()

step() {
    local name="$1"
    shift
    echo "--- $name"
    if ! "$@"; then
        failed+=("$name")
    fi
}

settings_doc=()
if [[ -f "$ROOT/docs/architecture.md" ]]; then
    settings_doc=(--settings-doc "$ROOT/docs/architecture.md")
fi
step "bicep parse" "$PY" "$ROOT/scripts/parse_bicep.py" "$INFRA" "${settings_doc[@]}"

APP_PY="${APP_PYTHON:-$ROOT/.venv/bin/python}"
run_deployment_check() {
    if [[ ! -x "$APP_PY" ]]; then
        echo "check_deployment: no app Python at $APP_PY (run make check-infra, which builds .venv)"
        return 1
    fi
    "$APP_PY" "$ROOT/scripts/check_deployment.py" --root "$ROOT" --infra "$INFRA" --workflows "$WORKFLOWS"
}
step "deployment settings, host.json, runbook" run_deployment_check

step "deployment package" "$PY" "$ROOT/scripts/package_app.py" --root "$ROOT"

run_checkov() {
    # checkov's exit code is not enough (see scripts/checkov_report.py); its JSON report is judged.
    local status=0
    "$VENV/bin/checkov" --framework bicep --skip-download --compact \
        -d "$INFRA" --external-checks-dir "$INFRA/checkov" \
        -o json --output-file-path "$TMP" > /dev/null 2> "$TMP/checkov.err" || status=$?
    if [[ ! -f "$TMP/results_json.json" ]]; then
        echo "checkov: no report (exit $status)"
        tail -n 20 "$TMP/checkov.err"
        return 1
    fi
    grep -E "ERROR|Traceback" "$TMP/checkov.err" | head -n 20 || true
    "$PY" "$ROOT/scripts/checkov_report.py" "$TMP/results_json.json" "$INFRA" "$INFRA/checkov"
}
step "checkov" run_checkov

step "zizmor" "$VENV/bin/zizmor" --offline --no-progress "$WORKFLOWS"
step "workflow schema" "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows \
    "$WORKFLOWS"/*.y*ml

check_json_and_yaml() {
    "$PY" - "$INFRA" "$ROOT/azure.yaml" <<'PYTHON'
import json
import sys
from pathlib import Path

import yaml

infra, azure_yaml = Path(sys.argv[1]), Path(sys.argv[2])
problems = []
for path in sorted(infra.rglob("*.json")):
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        problems.append(f"{path}: invalid JSON: {exc}")
for required in ("main.parameters.json", "abbreviations.json"):
    if not (infra / required).exists():
        problems.append(f"{infra / required}: missing")
if azure_yaml.exists():
    config = yaml.safe_load(azure_yaml.read_text(encoding="utf-8")) or {}
    api = (config.get("services") or {}).get("api") or {}
    if (api.get("host"), api.get("language")) != ("function", "python"):
        problems.append(f"{azure_yaml}: services.api must be host: function, language: python")
else:
    problems.append(f"{azure_yaml}: missing")
for line in problems:
    print(line)
print(f"json/yaml: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
PYTHON
}
step "json and yaml" check_json_and_yaml

if ((${#failed[@]})); then
    echo "check_infra: FAILED: ${failed[*]}"
    exit 1
fi
echo "check_infra: all checks passed"
