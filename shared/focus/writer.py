"""Writing the FOCUS dataset: the periods whose spend changed, one Parquet file per billing currency, and a manifest.

Layout in the container ``FOCUS_CONTAINER`` (``focus``) of the app's storage account (Data Lake Storage Gen2
style, one folder per period, so engines prune by period)::

    v1.2/billingPeriod=2026-11/cost-EUR.parquet
    v1.2/billingPeriod=2026-11/manifest.json

- **Only what changed**: the spend projection marks a period when it wrote any of its months (``FocusState``: a
  new ``change`` id, and ``changedAt``); a run writes the marked periods, and a file whose content (its SHA-256)
  is what is stored already is not uploaded again.
- **Readers never see half a file**: a file is replaced by one upload, which Blob Storage commits whole (a single
  put, or a block list committed at the end): a run cut off mid-upload leaves the previous file, whole.
- **Bounded and resumable**: the run deadline is checked before each file; a period cut short stays marked and the
  next run writes it again (from the stored spend: nothing is lost).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared import jsonutil
from shared.deadline import Deadline
from shared.focus import grants
from shared.focus.columns import FOCUS_VERSION, MONEY_SCALE
from shared.focus.dataset import PARTNER_VIEW, Built, PeriodData, View, build, coverage, freshness
from shared.pricing.amounts import money_text
from shared.settings import Settings
from shared.table_store import TableStore
from shared.timeutil import utc_text

log = logging.getLogger(__name__)

FOCUS_STATE = "FocusState"
STATE_PARTITION = "period"
SETUP_PARTITION, SETUP_KEY = "setup", "grants-and-rules"  # what the grant datasets were last written under


def folder(period: str) -> str:
    """The period's folder in the container."""
    return f"v{FOCUS_VERSION}/billingPeriod={period}"


def file_name(period: str, currency: str) -> str:
    """A currency's Parquet file of a period."""
    return f"{folder(period)}/cost-{currency.upper()}.parquet"


@dataclass
class FocusStats:
    """What one pass did."""

    periods: list[str] = field(default_factory=list)
    files_written: int = 0
    files_unchanged: int = 0
    rows: int = 0
    bytes: int = 0
    left: int = 0  # marked periods left for the next run (deadline)


def mark_changed(store: TableStore, periods: Iterable[str], now: datetime) -> None:
    """Note that these periods' spend changed (the projection calls it)."""
    stamp = utc_text(now)
    for period in sorted(set(periods)):
        row = store.get(FOCUS_STATE, STATE_PARTITION, period)
        state = dict(row) if row is not None else {"PartitionKey": STATE_PARTITION, "RowKey": period}
        state["changedAt"] = stamp
        state["change"] = uuid.uuid4().hex  # a new one each time: two changes within one clock tick are two
        store.upsert_one(FOCUS_STATE, state)


def enabled(settings: Settings) -> bool:
    """Is the dataset on, with a blob endpoint to write it to?"""
    return settings.focus_dataset and bool(settings.blob_connection_string or settings.blob_service_uri)


def container_client(settings: Settings, name: str | None = None) -> Any:
    """The dataset's container (``FOCUS_CONTAINER``, or a grant's ``name``), created if missing: a connection
    string locally, the managed identity in Azure."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import ContainerClient

    from shared.identity import azure_credential

    if settings.blob_connection_string:
        client = ContainerClient.from_connection_string(
            settings.blob_connection_string, name or settings.focus_container
        )
    else:
        client = ContainerClient(
            settings.blob_service_uri,
            name or settings.focus_container,
            credential=azure_credential(settings.blob_client_id),
        )
    try:
        client.create_container()
    except ResourceExistsError:
        pass
    return client


@dataclass(frozen=True)
class Target:
    """Where one dataset goes: the partner's (``key`` "", at cost) or a grant's (its own container, at its price)."""

    key: str  # "" for the partner's; the grant's container name otherwise (its digests' prefix)
    container: Any
    view: View = PARTNER_VIEW
    about: Mapping[str, Any] = field(default_factory=dict)  # what the manifest says of whose dataset it is

    def digest_key(self, currency: str) -> str:
        """The key of a file's digest in the period's state (the partner's: the currency alone)."""
        return f"{self.key}|{currency}" if self.key else currency


def write_marked(
    store: TableStore,
    container: Any,
    *,
    billing_account: str,
    now: datetime,
    deadline: Deadline,
    grant_containers: Callable[[str], Any] | None = None,
    grant_base: str = "focus",
) -> FocusStats:
    """Write every marked period (oldest first) until done or the deadline: the partner's dataset, and with
    ``grant_containers`` (``FOCUS_GRANT_DATASETS``) each grant's in its own container."""
    stats = FocusStats()
    targets = [Target("", container)]
    if grant_containers is not None:
        views = grants.grant_views(store, grant_base)
        _mark_all_if_changed(store, grants.setup_digest(store, views), now)
        targets += [
            Target(name, grant_containers(name), view, about) for name, view, about in views if not deadline.passed()
        ]
    _mark_unwritten_recent(store, now)
    marked = [
        row
        for row in store.partition(FOCUS_STATE, STATE_PARTITION)
        if row.get("change") and row.get("change") != row.get("writtenFor")
    ]
    for n, row in enumerate(sorted(marked, key=lambda r: str(r["RowKey"]))):
        if deadline.passed() or not write_period(
            store, targets, row, billing_account=billing_account, now=now, stats=stats, deadline=deadline
        ):
            stats.left = len(marked) - n
            break
    return stats


def _mark_unwritten_recent(store: TableStore, now: datetime) -> None:
    """This month and the last, when no run has written them yet (a first deployment over stored spend): later
    months are marked by the projection as their spend changes."""
    this = now.strftime("%Y-%m")
    last = (now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    known = {str(r["RowKey"]) for r in store.partition(FOCUS_STATE, STATE_PARTITION, select=["RowKey"])}
    missing = [p for p in (last, this) if p not in known]
    if missing:
        mark_changed(store, missing, now)


def _mark_all_if_changed(store: TableStore, digest: str, now: datetime) -> None:
    """Grants or price rules changed: every period written so far is written again (a grant's prices may move)."""
    row = store.get(FOCUS_STATE, SETUP_PARTITION, SETUP_KEY)
    if row is not None and row.get("digest") == digest:
        return
    mark_changed(store, [str(r["RowKey"]) for r in store.partition(FOCUS_STATE, STATE_PARTITION)], now)
    store.upsert_one(FOCUS_STATE, {"PartitionKey": SETUP_PARTITION, "RowKey": SETUP_KEY, "digest": digest})


def write_period(
    store: TableStore,
    targets: Sequence[Target],
    state: dict[str, Any],
    *,
    billing_account: str,
    now: datetime,
    stats: FocusStats,
    deadline: Deadline,
) -> bool:
    """Write one period's files and manifests; True when done (False: the deadline came first; it stays marked)."""
    period = str(state["RowKey"])
    seen = str(state["change"])
    data = PeriodData.read(store, period)
    digests: dict[str, str] = jsonutil.loads(state.get("digests") or "{}")
    for target in targets:
        files = []
        written: set[str] = set()
        for currency in data.currencies():
            if deadline.passed():
                return False
            built = build(data, currency, billing_account, target.view)
            if not built.rows and target.key:
                continue  # a grant sees nothing of this currency: no file
            name, key = file_name(period, currency), target.digest_key(currency)
            if digests.get(key) == built.sha256:
                stats.files_unchanged += 1
            else:
                target.container.upload_blob(name, built.data, overwrite=True, max_concurrency=2)
                stats.files_written += 1
                stats.bytes += len(built.data)
            stats.rows += built.rows
            digests[key] = built.sha256
            written.add(key)
            files.append(_file_entry(name, built))
        for gone in sorted(k for k in digests if _of_target(k, target) and k not in written):
            target.container.delete_blob(file_name(period, gone.rsplit("|", 1)[-1]), delete_snapshots="include")
            del digests[gone]
        manifest = {
            "focusVersion": FOCUS_VERSION,
            "billingPeriod": period,
            "status": "estimated",
            "figures": "cost" if target.view.price is None else "price",
            **({"grant": dict(target.about)} if target.about else {}),
            "writtenAt": utc_text(now),
            "dataChangedAt": state.get("changedAt"),
            "grain": "customer, subscription, usage day and meter category (a usage summary: its month)",
            "moneyScale": MONEY_SCALE,
            "files": files,
            "completeness": coverage(data) if not target.key else None,
            "recency": freshness(data.subjects),
        }
        manifest_name = f"{folder(period)}/manifest.json"
        target.container.upload_blob(manifest_name, jsonutil.dumps(manifest).encode(), overwrite=True)
    updated = {**state, "writtenFor": seen, "writtenAt": utc_text(now), "digests": jsonutil.dumps(digests)}
    etag = (getattr(state, "metadata", None) or {}).get("etag")
    if etag is None or not store.replace_if(FOCUS_STATE, updated, etag):
        # marked again meanwhile (or read without an etag): written now, and once more by the next run
        store.upsert_one(FOCUS_STATE, {**updated, "writtenFor": "" if etag else seen})
    stats.periods.append(period)
    log.info("focus: %s written (%d datasets)", period, len(targets))
    return True


def _of_target(key: str, target: Target) -> bool:
    """Is this digest key one of the target's files?"""
    return key.startswith(target.key + "|") if target.key else "|" not in key


def _file_entry(name: str, built: Built) -> dict[str, Any]:
    return {
        "path": name,
        "billingCurrency": built.currency,
        "rows": built.rows,
        "bytes": len(built.data),
        "sha256": built.sha256,
        "billedCost": money_text(built.billed_cost),
        "roundedAmounts": built.rounded,
        "unpricedAmounts": built.unpriced,
    }
