"""One run's context, what every sync job is handed (``Sync = Callable[[RunContext], None]``).

Settings, the store, the run record (``SyncRun``), the run's start time, its clock and sleep, and its **deadline**:
host.json's ``functionTimeout`` less a margin for the run's last writes (state rows, the run record). The soft
budget (SYNC_TIME_BUDGET_SECONDS: start no new unit of work) is clipped to it, and every wait of the clients (a
Retry-After, a 204, the 429 gate, export polling, a blob read) is bounded by it. Clients are built only when a job
asks for one, so a job needs only its own client's settings (``fetch_rated_usage`` needs no refresh token); they
share the run's correlation id, counters, sleep and deadline.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TypedDict, Unpack

from shared.counters import Counters
from shared.deadline import Deadline
from shared.graph.client import GraphBillingClient
from shared.partner_center import PartnerCenterClient
from shared.settings import Settings
from shared.sync.jobs import Job
from shared.sync.runs import SyncRun
from shared.table_store import TableStore
from shared.wiring import graph_billing_client, partner_center_client

log = logging.getLogger(__name__)

APP_ROOT = Path(__file__).resolve().parents[2]  # where host.json is, locally and in the deployed package
DEFAULT_FUNCTION_TIMEOUT = 300.0  # the platform's default (Consumption: 5 minutes) when host.json names none
DEADLINE_MARGIN_SECONDS = 30.0  # before the host's timeout: time to write state rows and the run record
_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?")


def function_timeout(root: Path = APP_ROOT) -> float | None:
    """host.json's ``functionTimeout`` in seconds; None when unlimited (``-1``); the platform default when absent."""
    try:
        host = json.loads((root / "host.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DEFAULT_FUNCTION_TIMEOUT
    value = str(host.get("functionTimeout") or "").strip() if isinstance(host, dict) else ""
    if value == "-1":
        return None
    match = _TIMESPAN.fullmatch(value)
    if match is None:
        if value:
            log.warning(
                "host.json functionTimeout %r is not [d.]hh:mm:ss; assuming %g s", value, DEFAULT_FUNCTION_TIMEOUT
            )
        return DEFAULT_FUNCTION_TIMEOUT
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


FUNCTION_TIMEOUT = function_timeout()


class Timing(TypedDict, total=False):
    """How a run keeps time, when not as in Azure (tests, benchmarks): the host's function timeout (None: none),
    the wall clock of its rows, the monotonic clock of its budget and deadline, and its sleep."""

    timeout_seconds: float | None
    now: Callable[[], datetime]
    clock: Callable[[], float]
    sleep: Callable[[float], None]


class RunContext:
    """Everything one run of a job uses; the clients are built on first use."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: TableStore,
        run: SyncRun,
        deadline: Deadline,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings, self.store, self.run = settings, store, run
        self.deadline, self.clock, self.sleep = deadline, clock, sleep
        self.now: datetime = run.started_at  # the run's "now": the time every row it writes is stamped with

    @classmethod
    def start(
        cls, job: Job, settings: Settings, store: TableStore, *, budget_seconds: float | None, **timing: Unpack[Timing]
    ) -> RunContext:
        """The context of a new run of ``job``: its deadline the function timeout (host.json's unless ``timing``
        says otherwise) less the margin from now, its budget clipped to that; the run record is written by
        ``with ctx.run``."""
        timeout = timing.get("timeout_seconds", FUNCTION_TIMEOUT)
        clock = timing.get("clock", time.monotonic)
        limit = None if timeout is None else max(0.0, timeout - DEADLINE_MARGIN_SECONDS)
        budgets = [seconds for seconds in (budget_seconds, limit) if seconds is not None]
        run = SyncRun(
            store,
            job.name,
            unit=job.unit,
            correlation_id=str(uuid.uuid4()),
            counters=Counters(),
            now=timing.get("now", lambda: datetime.now(timezone.utc)),
            clock=clock,
            budget_seconds=min(budgets) if budgets else None,
        )
        deadline = Deadline.after(limit, clock=clock)
        return cls(
            settings=settings,
            store=store,
            run=run,
            deadline=deadline,
            clock=clock,
            sleep=timing.get("sleep", time.sleep),
        )

    def remaining(self) -> float:
        """Seconds left before the deadline (infinity without one)."""
        return self.deadline.remaining()

    def out_of_time(self) -> bool:
        """True once the budget (never later than the deadline) is spent: start no new unit of work."""
        return self.run.out_of_time()

    @cached_property
    def partner_center(self) -> PartnerCenterClient:
        """The Partner Center client (needs the refresh-token settings; SettingsError names what is missing)."""
        return partner_center_client(
            self.settings,
            correlation_id=self.run.correlation_id,
            counters=self.run.counters,
            sleep=self.sleep,
            clock=self.clock,
            deadline=self.deadline,
        )

    @cached_property
    def graph(self) -> GraphBillingClient:
        """The Graph billing client (app-only: tenant, client id and secret; no refresh token)."""
        return graph_billing_client(
            self.settings,
            correlation_id=self.run.correlation_id,
            counters=self.run.counters,
            sleep=self.sleep,
            deadline=self.deadline,
        )
