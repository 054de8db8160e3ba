"""fetch_rate_card: the Azure rate card per currency, as dated snapshots that price legacy usage in the spend.

Once a day per (currency, RATE_CARD_REGION): the card is fetched (app-only) and compared with the newest snapshot
stored by its digest. An unchanged card only records that it was checked; a changed one is stored as a new
snapshot, in force from today (its parts first, its head row last: a reader never finds a head without its
parts). Either way the current and last month of every customer with a legacy subscription are marked, so the
spend's legacy figures are priced again and recomputed from the stored usage at least daily. ``done`` counts
currencies.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import timedelta

from azure.data.tables import UpdateMode

from shared import jsonutil
from shared.records import BadRecord
from shared.spend.ratecard import RateCard
from shared.spend.refresh import CardBook, mark
from shared.spend.rows import RATE_CARDS, RateCardSnapshot, month_of, rate_card_partition
from shared.sync.context import RunContext
from shared.table_store import TableStore
from shared.tables import LATEST, SUBSCRIPTIONS, USAGE_RECORDS, SubscriptionKind
from shared.timeutil import utc_text

log = logging.getLogger(__name__)


def usage_record_currencies(store: TableStore) -> tuple[str, ...]:
    """The currencies the stored usage records show, sorted."""
    found = {
        str(row["currencyCode"]).upper()
        for row in store.partition(USAGE_RECORDS, LATEST, select=["currencyCode"])
        if row.get("currencyCode")
    }
    return tuple(sorted(found))


def legacy_customers(store: TableStore) -> list[str]:
    """Every customer with a legacy (MS-AZR-0145P) subscription in the inventory."""
    rows = store.all_rows(SUBSCRIPTIONS, select=["customerId", "kind"])
    return sorted({str(row["customerId"]) for row in rows if row.get("kind") == SubscriptionKind.LEGACY})


def sync_rate_card(ctx: RunContext) -> None:
    """Check each currency's card once a day, store it when it changed, mark the legacy customers' months."""
    store, run, settings = ctx.store, ctx.run, ctx.settings
    region = settings.rate_card_region
    currencies = settings.rate_card_currencies or usage_record_currencies(store)
    today = ctx.now.date().isoformat()
    book = CardBook(store, region)
    for index, currency in enumerate(currencies):
        if run.out_of_time():
            run.add(pending=len(currencies) - index)
            run.note(f"time budget spent; {len(currencies) - index} rate cards left for the next run")
            break
        snapshots = book.snapshots(currency)
        newest = snapshots[-1] if snapshots else None
        if newest is not None and (newest.checked_at or newest.fetched_at)[:10] == today:
            run.add(done=1)
            continue
        subject = f"rate card {currency} {region}"
        try:
            body = ctx.partner_center.rate_card(currency=currency, region=region)
            card = RateCard.parse(body)
        except BadRecord as exc:
            run.quarantine(source=subject, raw=body, reason=str(exc))
            run.fail(subject, exc)
            continue
        except Exception as exc:  # one currency's failure does not stop the others
            run.fail(subject, exc)
            continue
        text = jsonutil.dumps(body)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if newest is not None and newest.digest == digest:
            writer = store.writer(RATE_CARDS, mode=UpdateMode.MERGE)
            pk = rate_card_partition(currency, region)
            writer.add({"PartitionKey": pk, "RowKey": newest.day, "checkedAt": utc_text(ctx.now)})
            writer.flush()
            run.note(f"{subject}: unchanged since {newest.day}")
        else:
            snapshot = RateCardSnapshot(
                currency=card.currency,
                region=region,
                day=today,
                digest=digest,
                meters=len(card.meters),
                parts=0,
                fetched_at=utc_text(ctx.now),
                checked_at=utc_text(ctx.now),
            )
            parts = snapshot.part_rows(text)
            store.upsert(RATE_CARDS, parts)
            store.upsert_one(RATE_CARDS, replace(snapshot, parts=len(parts)).head())
            run.add(rows=len(parts) + 1)
            skipped = f"; {len(card.skipped)} meters could not be read" if card.skipped else ""
            run.note(f"{subject}: a new snapshot of {len(card.meters)} meters in force from {today}{skipped}")
        run.add(done=1)
    first = ctx.now.date().replace(day=1)
    periods = [month_of(first.isoformat()), month_of((first - timedelta(days=1)).isoformat())]
    mark(store, legacy_customers(store), periods)
