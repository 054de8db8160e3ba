"""Judge a checkov JSON report of the Bicep in infra/ and print a compact summary.

checkov's own exit code misses three ways a scan can be hollow, so this fails on them too:
a file checkov could not parse (it only counts it), a project policy that never produced a
result (checkov logs a crashing or unloaded external check and goes on), and a skip comment
without a reason or that matches no result (a typo or a stale suppression).

Usage: python scripts/checkov_report.py REPORT.json INFRA_DIR POLICY_DIR
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

SKIP_COMMENT = re.compile(r"checkov:skip=([A-Za-z_\d-]+)(:[^\n]*)?")
POLICY_ID = re.compile(r"""id\s*=\s*["'](CKV_[A-Z0-9_]+)["']""")


def load_reports(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    reports = data if isinstance(data, list) else [data]
    return [r for r in reports if isinstance(r, dict)]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    report_path, infra, policy_dir = Path(argv[0]), Path(argv[1]).resolve(), Path(argv[2])
    problems: list[str] = []
    results: dict[str, list[dict[str, Any]]] = {"passed_checks": [], "failed_checks": [], "skipped_checks": []}
    parsing_errors: list[str] = []

    reports = load_reports(report_path)
    for report in reports:
        for key in results:
            results[key].extend(report.get("results", {}).get(key, []))
        parsing_errors.extend(report.get("results", {}).get("parsing_errors", []))
    if not any(results.values()):
        problems.append("checkov produced no results (no Bicep resources scanned)")

    for failed in results["failed_checks"]:
        start, end = failed.get("file_line_range") or (0, 0)
        problems.append(
            f"FAILED {failed['check_id']} {failed['resource']} ({failed['file_path']}:{start}-{end}): "
            f"{failed['check_name']}"
        )
    for path in parsing_errors:
        problems.append(f"checkov could not parse {path}")

    # Every project policy must have looked at something.
    ran = Counter(r["check_id"] for rs in results.values() for r in rs)
    for policy_file in sorted(policy_dir.glob("*.py")):
        for policy_id in POLICY_ID.findall(policy_file.read_text(encoding="utf-8")):
            if not ran[policy_id]:
                problems.append(f"project policy {policy_id} produced no result (not loaded, crashed or unused)")

    # Every skip comment carries a reason and matches a skipped result of the same file.
    skipped = {(Path(r["file_abs_path"]).resolve(), r["check_id"]) for r in results["skipped_checks"]}
    skip_count = 0
    for bicep in sorted(infra.rglob("*.bicep")):
        for number, line in enumerate(bicep.read_text(encoding="utf-8").splitlines(), start=1):
            match = SKIP_COMMENT.search(line)
            if not match:
                continue
            skip_count += 1
            where = f"{bicep.relative_to(infra.parent)}:{number}"
            reason = (match.group(2) or "")[1:].strip()
            if len(reason) < 20:
                problems.append(f"{where}: skip of {match.group(1)} needs a reason")
            if (bicep.resolve(), match.group(1)) not in skipped:
                problems.append(f"{where}: skip of {match.group(1)} matches no check result (typo or stale)")

    summary = (
        f"checkov: {len(results['passed_checks'])} passed, {len(results['failed_checks'])} failed, "
        f"{len(results['skipped_checks'])} skipped ({skip_count} justified skip comments), "
        f"{len(parsing_errors)} parsing errors"
    )
    for line in problems:
        print(f"checkov: {line}")
    print(summary)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
