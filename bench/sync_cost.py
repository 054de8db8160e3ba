"""Parts 1 and 2: what a first utilization sync costs (calls, transactions, time, memory) and how close
it gets to the latency-bound limit.

Every run is a first sync (no watermarks) of a fresh simulated world into fresh tables in the same Azurite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from bench.common import legacy_world, run_utilization_sync

Progress = Callable[[str], None]


class _SyncOptions(TypedDict):
    """The keyword arguments of ``run_utilization_sync`` that every run of one world shares."""

    connection_string: str
    latency_ms: float
    backfill_days: int
    azurite_pid: int | None


def _describe(result: dict[str, Any]) -> str:
    return (
        f"{result['store']:>8} subs={result['subscriptions']:<4} c={result['concurrency']:<2} "
        f"{result['wall_s']:7.2f}s calls={result['calls']} (min {result['minimum']['calls']}) "
        f"data tx={result['data_transactions']} (min {result['minimum']['data_transactions']}) "
        f"all tx={result['transactions']} (min {result['minimum']['transactions']}) "
        f"cpu={result['cpu_s']:.0f}s azurite cpu={result['azurite_cpu_s'] or 0:.0f}s {result['status']}"
    )


def sync_cost(
    connection_string: str,
    *,
    sizes: Sequence[int],
    days: int,
    records_per_day: int,
    latency_ms: float,
    concurrency: int,
    extra_concurrency: Sequence[int],
    extra_at: int,
    baseline_max: int,
    progress: Progress,
    azurite_pid: int | None = None,
) -> dict[str, Any]:
    """Ours and the baseline (sequential calls, one request per row) on worlds of ``sizes`` subscriptions."""
    runs: list[dict[str, Any]] = []
    for size in sizes:
        config = legacy_world(size, days=days, records_per_day=records_per_day)
        common: _SyncOptions = {
            "connection_string": connection_string,
            "latency_ms": latency_ms,
            "backfill_days": days,
            "azurite_pid": azurite_pid,
        }
        ours = {"role": "ours", **run_utilization_sync(config, concurrency=concurrency, **common)}
        progress(_describe(ours))
        runs.append(ours)
        if size <= baseline_max:
            base = run_utilization_sync(config, concurrency=1, store="baseline", **common)
            progress(_describe(base))
            runs.append({"role": "baseline", **base})
            ours["baseline_wall_s"] = base["wall_s"]
            ours["speedup_vs_baseline"] = base["wall_s"] / ours["wall_s"]
        if size == extra_at:
            for extra in extra_concurrency:
                other = run_utilization_sync(config, concurrency=extra, **common)
                progress(_describe(other))
                runs.append({"role": f"ours-c{extra}", **other})
    return {
        "world": {
            "days": days,
            "records_per_day": records_per_day,
            "records_per_window": runs[0]["minimum"]["records"] // max(1, runs[0]["minimum"]["windows"]),
            "latency_ms": latency_ms,
            "customers": "one per legacy subscription, each also with an Azure plan and a licence subscription",
        },
        "runs": runs,
    }


def latency_bound(
    connection_string: str,
    *,
    subscriptions: int,
    days: int,
    records_per_day: int,
    latency_ms: float,
    concurrency: int,
    progress: Progress,
    azurite_pid: int | None = None,
) -> dict[str, Any]:
    """Sync time with every call taking ``latency_ms`` against the bound those calls set.

    bound = latency x max(ceil(calls / concurrency), longest chain), where calls are the Partner Center
    calls the run made and the longest chain is the calls that must follow one another: the customers
    pages, one subscriptions call, then every page of the busiest subscription's windows (token requests
    and table time are not in the bound).
    """
    config = legacy_world(subscriptions, days=days, records_per_day=records_per_day)
    result = run_utilization_sync(
        config,
        connection_string=connection_string,
        latency_ms=latency_ms,
        concurrency=concurrency,
        backfill_days=days,
        azurite_pid=azurite_pid,
    )
    progress(_describe(result))
    chain = result["minimum"]["longest_chain_calls"]
    bound = latency_ms / 1000 * max(math.ceil(result["calls"] / concurrency), chain)
    return {
        **result,
        "formula": "latency x max(ceil(calls / concurrency), customers pages + 1 + busiest subscription's pages)",
        "longest_chain_calls": chain,
        "bound_s": bound,
        "vs_bound": result["wall_s"] / bound,
    }
