"""Part 5: cold start, as the import time of each function module in a fresh interpreter.

``python -X importtime -c "import <module>"`` from the repository root; the cumulative microseconds of the
module's own top-level line (no indentation: imported by ``-c``, not by another module). One untimed run
first writes the bytecode caches, as an installed app has them (PYTHONDONTWRITEBYTECODE is dropped from
these interpreters' environment so it can); then the median of ``repeats`` runs.

Measured twice: from nothing, and with ``azure.functions`` imported first (``-c "import azure.functions;
import <module>"``), as the Functions Python worker has it loaded before it imports a function's script.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

from devhost.funcapp import discover

REPO_ROOT = Path(__file__).resolve().parent.parent
MODULES = tuple(spec.module_name for spec in discover(REPO_ROOT))  # every function folder, as Azure imports it
PRELOADED = "azure.functions"


def cumulative_us(stderr: str, module: str) -> int:
    """The cumulative import time of ``module`` from ``-X importtime`` output."""
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[2].rstrip() == " " + module:
            return int(fields[1])
    raise ValueError(f"no top-level import line for {module}")


def import_us(module: str, *, preload: str | None = None) -> int:
    """One fresh interpreter importing ``module`` (after ``preload``, untimed, when given)."""
    code = f"import {preload}; import {module}" if preload else f"import {module}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"import {module} failed: {done.stderr[-1000:]}")
    return cumulative_us(done.stderr, module)


def cold_start(repeats: int = 3) -> dict[str, dict[str, object]]:
    """Median import time per function module in ms, from nothing and with azure.functions loaded."""
    results: dict[str, dict[str, object]] = {}
    for module in MODULES:
        import_us(module)  # bytecode caches
        cold = [import_us(module) / 1000 for _ in range(repeats)]
        warm = [import_us(module, preload=PRELOADED) / 1000 for _ in range(repeats)]
        results[module] = {
            "median_ms": statistics.median(cold),
            "samples_ms": cold,
            "preloaded_median_ms": statistics.median(warm),
            "preloaded_samples_ms": warm,
        }
    return results
