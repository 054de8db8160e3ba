"""A simulated partner whose every timer ran once (the rate card last), in tables of its own: the world the spend
and price tests read."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from azure.data.tables import TableServiceClient

from devhost.simulator import Simulator, WorldConfig
from shared.settings import Settings
from shared.sync.jobs import JOB_NAMES
from shared.table_store import TableStore
from tests.rated_support import NOW
from tests.stores import drop_tables
from tests.sync_support import run_job, sim_env, ties_out


@contextmanager
def every_timer_once(
    azurite: Any, azurite_blob: Any, tag: str, **overrides: str
) -> Iterator[tuple[Simulator, TableStore, dict[str, str]]]:
    """Four customers (one forbidden) over 30 days; every timer once, in its own tables (prefix ``tag`` + random)."""
    config = WorldConfig(now=NOW, customers=4, forbidden_customers=1, days=30, invoice_months=1)  # October's
    with Simulator(world=config, blob_connection_string=azurite_blob.connection_string) as sim:
        ties_out(sim)  # the planted tie-out mismatch is test_billing's story
        service = TableServiceClient.from_connection_string(azurite.connection_string)
        store = TableStore(service, prefix=tag + uuid.uuid4().hex[:10])
        more = {"UTILIZATION_BACKFILL_DAYS": "25", "RATED_USAGE_CURRENCIES": "", **overrides}
        env = sim_env(sim, azurite, store.prefix, **more)
        for name in JOB_NAMES:
            run = run_job(name, Settings.from_env(env), store, NOW)
            assert not run.errors, (name, run.errors)
        try:
            yield sim, store, env
        finally:
            drop_tables(store)
