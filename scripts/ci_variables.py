"""Print the `gh variable set` commands that copy the azd environment's app settings to repository variables.

CI deploys every operator-settable app setting (infra/app-settings.json) from the repository variable of the
same name; an unset one deploys the default. So once CI deploys, a value that lives only in the local azd
environment (`azd env set API_ACCESS_MODE both`) would be put back to the default by the next push. This prints,
for every such setting that has a value in the azd environment, the command that sets the repository variable;
review the list and pipe it to bash. It prints nothing secret: no operator setting is one.

Usage: .venv/bin/python scripts/ci_variables.py --repo OWNER/REPO [--environment NAME] | bash
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from check_deployment import operator_settings  # noqa: E402 (scripts/ is put on the path first)


def azd_values(environment: str | None) -> dict[str, str]:
    """`azd env get-values` of the selected (or named) azd environment."""
    command = ["azd", "env", "get-values", "--output", "json"] + (["--environment", environment] if environment else [])
    return {str(k): str(v) for k, v in json.loads(subprocess.check_output(command, text=True)).items()}


def commands(values: dict[str, str], repo: str) -> list[str]:
    """One `gh variable set` per operator setting the azd environment gives a value."""
    out = []
    for setting in operator_settings(ROOT / "infra"):
        value = values.get(setting.name, "")
        if value:
            out.append(f"gh variable set {setting.name} --repo {shlex.quote(repo)} --body {shlex.quote(value)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="OWNER/REPO of the GitHub repository")
    parser.add_argument("--environment", help="the azd environment (default: the selected one)")
    args = parser.parse_args(argv)
    lines = commands(azd_values(args.environment), args.repo)
    print("\n".join(lines))
    print(f"# {len(lines)} app setting(s) of the azd environment", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
