"""``python -m bench --mode quick|full [--out bench/results/latest.json]``: every benchmark, a table, a JSON file.

Starts Azurite (in memory) once; each part starts the simulators it needs. Progress goes to stderr, the
report (markdown) to stdout. A part that fails is reported as an error and the exit status is 1; a missed
target is only reported (targets are not assertions).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from bench import (
    auth,
    billing,
    cold_start,
    increment,
    ingest,
    memory,
    rated_usage,
    read_api,
    row_pipeline,
    spend,
    sync_cost,
)
from bench.report import render, targets
from devhost.azurite import running_azurite, running_azurite_blob
from shared.settings import Settings

PARTS = (
    "sync",
    "latency",
    "memory",
    "api",
    "imports",
    "rated",
    "auth",
    "rows",
    "cost",
    "spend",
    "ingest",
    "billing",
)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass(frozen=True)
class Mode:
    """Sizes of one mode."""

    sizes: tuple[int, ...]
    days: int
    extra_concurrency: tuple[int, ...]
    extra_at: int
    baseline_max: int
    latency_subscriptions: int
    latency_days: int
    memory_records: tuple[int, int]
    memory_sink: str
    api_repeats: int
    rps_count: int
    rps_seconds: float
    rated: tuple[tuple[int, str], ...]  # (lines of the export, sink of the line rows)
    rows_stage: int  # rows through each stage of the row pipeline
    cost: tuple[tuple[int, int], ...]  # (subscriptions, backfill days) simulated at 1 s per call
    rows_sync: tuple[int, int]  # (subscriptions, days) of the sync whose app CPU per row is measured
    ingest: tuple[int, int]  # (lines of the export, lines per blob) staged and committed as the queue workers do
    spend_customers: int  # customers (x 3 Azure subscriptions x 31 days) of the partner-wide spend answer
    rows_full_pages: tuple[int, int] = (1, 2)  # (subscriptions, days) of the sync on full 1,000-record pages
    billing_lines: int = 100_000  # reconciliation lines through the billed ingest's per-line path (issue 23)


MODES = {
    "quick": Mode(
        sizes=(10, 30),
        days=2,
        extra_concurrency=(8, 16),
        extra_at=30,
        baseline_max=30,
        latency_subscriptions=10,
        latency_days=2,
        memory_records=(10_000, 100_000),
        memory_sink="discard",
        api_repeats=11,
        rps_count=50,
        rps_seconds=2,
        rated=((10_000, "azurite"),),
        rows_stage=2_000,
        cost=((20, 5),),
        rows_sync=(10, 10),
        spend_customers=200,
        ingest=(20_000, 2_500),
    ),
    "full": Mode(
        sizes=(10, 100, 500),
        days=30,
        extra_concurrency=(),  # ~75 s each at 100 subscriptions, CPU-bound on 2 cores: opt in with the flag
        extra_at=100,
        baseline_max=100,
        latency_subscriptions=100,
        latency_days=30,
        memory_records=(10_000, 1_000_000),
        # recycle (every row through the Azure SDK to Azurite) costs ~1.2 ms per row here: 1M rows take ~21 min
        # of a ~45 min run. discard keeps the full mode near 30 min; --memory-sink recycle for the SDK path.
        memory_sink="discard",
        api_repeats=51,
        rps_count=2000,
        rps_seconds=20,
        # 1M line rows through the SDK to Azurite would take ~20 min: at that size the line rows are counted
        # and dropped (everything else, pointers included, is stored), which is what memory and CPU are about.
        rated=((100_000, "azurite"), (1_000_000, "discard")),
        rows_stage=5_000,
        cost=((200, 30), (2_000, 30)),
        rows_sync=(20, 30),  # the world of issue 16: 20 subscriptions x 30 daily windows, ~16,200 rows
        spend_customers=2_000,  # issue 21: 2,000 customers x 3 subscriptions x 31 days
        ingest=(10_000_000, 50_000),  # issue 22: a large partner's month, 200 blobs
        rows_full_pages=(4, 5),  # ~20,000 rows in 40 pages
        billing_lines=1_000_000,  # issue 23: the RSS goal is stated at 1M lines
    ),
}


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="quick")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results (default %(default)s)")
    parser.add_argument("--latency-ms", type=float, default=30.0, help="simulated latency of part 1 (ms per call)")
    parser.add_argument("--bound-latency-ms", type=float, default=100.0, help="simulated latency of part 2")
    parser.add_argument(
        "--concurrency", type=int, default=Settings().sync_concurrency, help="SYNC_CONCURRENCY (app default)"
    )
    parser.add_argument(
        "--extra-concurrency", help="comma-separated, also run at the speed-up size (quick: 8,16; full: none)"
    )
    parser.add_argument(
        "--records-per-day", type=int, default=24, help="per legacy subscription and usage day (~27 per window)"
    )
    parser.add_argument("--memory-sink", choices=("azurite", "recycle", "discard"), help="override the mode's")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the chosen parts, print the report, write the JSON."""
    args = _parser().parse_args(argv)
    mode = MODES[args.mode]
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        _parser().error(f"unknown parts: {', '.join(unknown)}")
    if args.extra_concurrency is None:
        extra = mode.extra_concurrency
    else:
        extra = tuple(int(c) for c in args.extra_concurrency.split(",") if c.strip())
    results: dict[str, Any] = {
        "mode": args.mode,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": psutil.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
        },
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "parameters": {
            "latency_ms": args.latency_ms,
            "bound_latency_ms": args.bound_latency_ms,
            "concurrency": args.concurrency,
            "extra_concurrency": list(extra),
            "records_per_day": args.records_per_day,
            **{k: v for k, v in mode.__dict__.items() if k not in ("memory_sink", "extra_concurrency")},
            "memory_sink": args.memory_sink or mode.memory_sink,
        },
        "errors": {},
    }
    started = time.perf_counter()

    def attempt(name: str, work: Callable[[], Any]) -> None:
        if name not in parts:
            return
        _progress(f"part {name}")
        part_started = time.perf_counter()
        try:
            results[name] = work()
        except Exception as exc:
            _progress(f"part {name} failed: {type(exc).__name__}: {exc}")
            results["errors"][name] = traceback.format_exc()
        results.setdefault("part_seconds", {})[name] = round(time.perf_counter() - part_started, 1)

    with running_azurite() as azurite:
        cs = azurite.connection_string
        attempt(
            "sync",
            lambda: sync_cost.sync_cost(
                cs,
                sizes=mode.sizes,
                days=mode.days,
                records_per_day=args.records_per_day,
                latency_ms=args.latency_ms,
                concurrency=args.concurrency,
                extra_concurrency=extra,
                extra_at=mode.extra_at,
                baseline_max=mode.baseline_max,
                progress=_progress,
                azurite_pid=azurite.process.pid,
            ),
        )
        attempt(
            "latency",
            lambda: sync_cost.latency_bound(
                cs,
                subscriptions=mode.latency_subscriptions,
                days=mode.latency_days,
                records_per_day=args.records_per_day,
                latency_ms=args.bound_latency_ms,
                concurrency=args.concurrency,
                progress=_progress,
                azurite_pid=azurite.process.pid,
            ),
        )

        def memory_part() -> dict[str, Any]:
            runs = []
            for records in mode.memory_records:
                runs.append(memory.measure(records, cs, sink=args.memory_sink or mode.memory_sink))
                _progress(
                    f"memory {runs[-1]['records']} records: peak RSS {runs[-1]['peak_rss_mb']:.1f} MB "
                    f"(+{runs[-1]['growth_mb']:.1f} MB over {runs[-1]['rss_before_mb']:.1f}) "
                    f"in {runs[-1]['seconds']:.1f}s"
                )
            return {"runs": runs, "growth_mb": runs[1]["peak_rss_mb"] - runs[0]["peak_rss_mb"]}

        attempt("memory", memory_part)

        def rows_part() -> dict[str, Any]:
            staged = row_pipeline.stages(cs, rows=mode.rows_stage)
            _progress(f"rows: {staged['ours']['total']} us/row (SDK path {staged['sdk']['total']})")
            subscriptions, days = mode.rows_sync
            sync = row_pipeline.sync_cpu(
                cs, subscriptions=subscriptions, days=days, records_per_day=args.records_per_day
            )
            _progress(
                f"rows: sync {sync['ours']['cpu_us_per_row']} us/row app CPU "
                f"(submit_transaction: {sync['sdk_transactions']['cpu_us_per_row']})"
            )
            # issue 22: windows of ~990 records, so every page Partner Center answers is (nearly) a full 1,000
            subscriptions, days = mode.rows_full_pages
            full = row_pipeline.sync_cpu(cs, subscriptions=subscriptions, days=days, records_per_day=1200)
            _progress(f"rows: sync on full pages {full['ours']['cpu_us_per_row']} us/row app CPU")
            return {"stages": staged, "sync": sync, "full_pages": full}

        attempt("rows", rows_part)

        def spend_part() -> dict[str, Any]:
            found = spend.measure(cs, customers=mode.spend_customers)
            _progress(
                f"spend {found['customers']} customers: {found['requests']} requests, answer CPU "
                f"{found['answer_vs_raw']}x the raw read, priced {found['priced_answer_vs_partner_answer']}x, "
                f"projection {found['projection']['cpu_us_per_source_day']} "
                "us per source day"
            )
            return found

        attempt("spend", spend_part)
        attempt(
            "api",
            lambda: read_api.read_api(
                cs,
                repeats=mode.api_repeats,
                rps_count=mode.rps_count,
                rps_seconds=mode.rps_seconds,
                progress=_progress,
            ),
        )
    attempt("imports", cold_start.cold_start)

    def rated_part() -> dict[str, Any]:
        runs = []
        with running_azurite() as tables_emulator, running_azurite_blob() as blobs:
            for lines, sink in mode.rated:
                runs.append(
                    rated_usage.measure(lines, tables_emulator.connection_string, blobs.connection_string, sink=sink)
                )
                r = runs[-1]
                _progress(
                    f"rated {r['lines']} lines ({sink}): {r['ingest']['lines_per_s']} lines/s, "
                    f"{r['ingest']['cpu_us_per_line']} us/line, RSS +{r['ingest']['rss_growth_mb']} MB"
                )
        return {"runs": runs}

    attempt("rated", rated_part)

    def billing_part() -> dict[str, Any]:
        found = billing.measure(mode.billing_lines)
        _progress(
            f"billing {found['lines']} reconciliation lines: {found['lines_per_s']} lines/s, "
            f"{found['cpu_us_per_line']} us/line ({found['vs_baseline']}x json.loads), RSS +{found['rss_growth_mb']} MB"
        )
        return found

    attempt("billing", billing_part)
    attempt("auth", auth.measure)

    def cost_part() -> dict[str, Any]:
        runs = []
        with running_azurite() as emulator:
            for subscriptions, days in mode.cost:
                runs.append(
                    increment.measure(
                        emulator.connection_string,
                        subscriptions=subscriptions,
                        backfill_days=days,
                        concurrency=args.concurrency,
                    )
                )
                r = runs[-1]
                _progress(
                    f"cost {subscriptions} subs: backfill {r['backfill']['runs']} runs, day {r['day']['calls']} calls "
                    f"(min {r['day']['minimum_calls']})"
                )
        return {"runs": runs}

    attempt("cost", cost_part)

    def ingest_part() -> dict[str, Any]:
        total, per_blob = mode.ingest
        result: dict[str, Any] = ingest.measure(total, lines_per_blob=per_blob)
        _progress(
            f"ingest {result['lines']:,} lines in {result['blobs']} blobs: {result['app_cpu_us_per_line']} us/line, "
            f"RSS +{result['rss_growth_mb']} MB, 16 workers {result['workers']['16']['wall_s']} s "
            f"(ideal {result['workers']['16']['ideal_s']} s)"
        )
        return result

    attempt("ingest", ingest_part)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["targets"] = targets(results)
    report = render(results)
    results["report"] = report
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(report)
    print(f"\nJSON: {args.out}  ({results['seconds']:.0f}s in all)")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
