"""Part 3: peak RSS of one utilization sync of N records (one subscription, many pages) in a fresh process.

``python -m bench.memory --records 10000 [--sink azurite|recycle|discard]`` starts Azurite and the simulator
in this process, then runs the sync in a child process (``--child``) that reports ``ru_maxrss`` after its
imports (the baseline) and after the sync; the growth is the sync's own. The simulator stays in the parent,
so what it costs to generate the records is not in the child's RSS.

Sinks for the Utilization rows (every other table always goes to Azurite):
- ``azurite``: the app's TableStore, every row stored.
- ``recycle``: every transaction sent to Azurite as the app builds it, RowKeys cycled through 100 slots so
  Azurite holds 100 rows whatever N is (Azurite in memory cannot hold 1M rows in reasonable time and RAM).
- ``discard``: batches built by the app but not sent (no Azure SDK serialisation): the app's own memory only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from azure.data.tables import TableServiceClient

from bench.common import NOW, STORES, legacy_world, minimum_for, run_once, sim_env
from devhost.simulator import Simulator, WorldConfig
from devhost.simulator.world import World
from shared.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKFILL_DAYS = 30
# Linux folds the parent's peak RSS into a child's ru_maxrss at exec (fork or vfork alike), so a child started
# straight from this ~100 MB process would report at least 100 MB. A small interpreter in between (no site
# imports, ~10 MB) starts the measured child, whose ru_maxrss is then its own.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def memory_world(records: int, days: int = BACKFILL_DAYS) -> WorldConfig:
    """One customer with one legacy subscription whose ``days`` windows hold at least ``records`` in all."""
    settings = Settings(utilization_backfill_days=days)
    per_day = max(1, math.floor(records / days / 1.1))
    while True:
        config = legacy_world(1, days=days, records_per_day=per_day, others_per_customer=False)
        if minimum_for(World(config), settings).records >= records:
            return config
        per_day += max(1, per_day // 200)


def measure(
    records: int, connection_string: str, *, sink: str = "recycle", days: int = BACKFILL_DAYS, timeout: float = 3600
) -> dict[str, Any]:
    """Serve the world from this process and sync it in a fresh child; the child's numbers plus the minimum."""
    config = memory_world(records, days)
    with Simulator(world=config) as sim:
        prefix = "m" + os.urandom(6).hex()
        env = {
            **os.environ,
            **sim_env(sim, connection_string, prefix, UTILIZATION_BACKFILL_DAYS=str(days)),
            "PYTHONPATH": str(REPO_ROOT),
        }
        minimum = minimum_for(sim.world, Settings.from_env(env))
        command = [sys.executable, "-S", "-c", LAUNCHER, sys.executable, "-m", "bench.memory", "--child"]
        command += ["--sink", sink, "--now", NOW.isoformat()]
        done = subprocess.run(
            command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed ({done.returncode}): {done.stderr[-2000:]}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "records_target": records,
        "records": minimum.records,
        "records_per_window": minimum.records // max(1, minimum.windows),
        "windows": minimum.windows,
        "min_pages": minimum.utilization_pages,
        "sink": sink,
        **child,
    }


def _max_rss_mb() -> float:
    # Linux reports kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _vm_hwm_mb() -> float | None:
    """The peak RSS of this process image (VmHWM): a cross-check of ru_maxrss, never inherited."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def child(sink: str, now: datetime) -> dict[str, Any]:
    """Run one sync from the environment's settings; RSS before and after, in MiB."""
    settings = Settings.from_env()
    service = TableServiceClient.from_connection_string(settings.storage_connection_string)
    store = STORES[sink](service, prefix=settings.table_prefix)
    before, hwm_before = _max_rss_mb(), _vm_hwm_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        run = run_once("fetch_utilization", settings, store, now)  # a failure is reported through the status
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        after, hwm_after = _max_rss_mb(), _vm_hwm_mb()
    finally:
        store.drop_tables()
    return {
        "status": run.status,
        "rows": run.counters["rows"],
        "calls": run.counters["calls"],
        "pages": run.counters["pages"],
        "transactions": store.transactions,
        "seconds": seconds,
        "cpu_s": cpu,
        "rss_before_mb": before,
        "peak_rss_mb": after,
        "growth_mb": after - before,
        "vm_hwm_before_mb": hwm_before,
        "vm_hwm_after_mb": hwm_after,
    }


def main(argv: list[str] | None = None) -> int:
    """Standalone: start Azurite, measure, print JSON. ``--child``: the measured process itself."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--sink", choices=("azurite", "recycle", "discard"), default="recycle")
    parser.add_argument("--days", type=int, default=BACKFILL_DAYS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--now", type=datetime.fromisoformat, default=NOW, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.sink, args.now)), flush=True)
        return 0
    from devhost.azurite import running_azurite

    with running_azurite() as azurite:
        result = measure(args.records, azurite.connection_string, sink=args.sink, days=args.days)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
