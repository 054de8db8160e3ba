"""Issue 23: the billed reconciliation ingest's own cost per line, and its memory at any size.

``python -m bench.billing --lines 1000000``: N reconciliation lines (licences, reservations, marketplace and
Azure plan charges over 2,000 customers, generated one at a time, never held) go through the ingest's per-line
path as a run does: ``parse_charge``, the tally, and the line row built and sized for its transaction
(``sized_entity``: the row as the Azure SDK would send it; the batches are not sent, so Azurite's speed is not
in the figure). Reported: lines per second and CPU microseconds per line (the best of three passes over 50,000
lines held in memory), that as a ratio to a baseline run in the same process on the same lines (``json.loads``
with ``Decimal`` of each line, nothing else), and the peak RSS growth over all N lines generated one at a time
(the tally grows with customers and subjects, not lines). Checkpoints pack the tally; nothing is sent.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from bench.common import RssSampler
from shared import jsonutil
from shared.billing import ingest
from shared.billing.lines import parse_charge
from shared.billing.rows import Tally, line_key
from shared.table_store import sized_entity

CUSTOMERS = 2_000
PRODUCTS = (
    ("Microsoft 365 Business Standard", "License", "Microsoft Corporation", "", "Monthly", "1 Month Subscription"),
    ("Reserved VM Instance, Standard_D2s_v3", "Azure", "Microsoft", "r", "Monthly", "1 Year Subscription"),
    ("Contoso Backup (SaaS)", "SaaS", "Contoso SaaS Ltd", "", "Monthly", "1 Month Subscription"),
    ("Azure plan", "Azure", "Microsoft", "", "", ""),
)


def lines(count: int) -> Iterator[str]:
    """``count`` reconciliation lines as JSON text, one at a time."""
    for n in range(count):
        customer = n % CUSTOMERS
        product, category, publisher, reservation, cycle, term = PRODUCTS[n % len(PRODUCTS)]
        quantity = 1 + n % 40
        unit = Decimal(12) + Decimal(n % 997) / Decimal(1000)
        subtotal = unit * quantity * Decimal("0.95")
        yield json.dumps(
            {
                "PartnerId": "3b5f7a0e-0000-4000-8000-000000000001",
                "CustomerId": f"00000000-0000-4000-8000-{customer:012d}",
                "CustomerName": f"Customer {customer}",
                "InvoiceNumber": "G000000001",
                "Tier2MpnId": str(1_000_000 + customer % 50) if customer % 3 == 1 else "",
                "ProductId": "DZH318Z0BPS6" if product == "Azure plan" else f"CFQ7TTC0{n % 9:04d}",
                "ProductName": product,
                "SkuName": product,
                "ChargeType": "usage" if product == "Azure plan" else "cycleCharge",
                "UnitPrice": str(unit),
                "EffectiveUnitPrice": str(unit * Decimal("0.95")),
                "Quantity": quantity,
                "Subtotal": str(subtotal),
                "TaxTotal": "0",
                "Total": str(subtotal),
                "Currency": "EUR",
                "PublisherName": publisher,
                "SubscriptionId": f"10000000-0000-4000-8000-{(customer * 4 + n % 4):012d}",
                "ChargeStartDate": "2026-10-01T00:00:00Z",
                "ChargeEndDate": "2026-10-31T00:00:00Z",
                "TermAndBillingCycle": term,
                "BillingFrequency": cycle,
                "ReservationOrderId": f"20000000-0000-4000-8000-{customer:012d}" if reservation else "",
                "ProductCategory": category,
            },
            separators=(",", ":"),
        )


CPU_SAMPLE = 50_000  # lines timed for the CPU figures (generated first: their generation is not in the time)


def _cpu() -> float:
    return time.process_time()


def baseline(texts: list[str]) -> float:
    """CPU seconds of ``json.loads`` with Decimal of each line, nothing else."""
    started = _cpu()
    for text in texts:
        jsonutil.loads(text)
    return _cpu() - started


def ours(texts: Iterable[str]) -> tuple[float, float, int, Tally]:
    """CPU seconds, peak RSS growth (MiB) and rows of the ingest's per-line path over the lines."""
    tally, segment = Tally(), Tally()
    rows = 0
    started = _cpu()
    with RssSampler() as rss:
        for number, text in enumerate(texts, 1):
            charge = parse_charge(text)
            segment.add_charge(charge, "2026-10")
            entity = {
                "PartitionKey": "G000000001|0123456789abcdef",
                "RowKey": line_key(charge.customer_id, "r", 0, number),
                "customerId": charge.customer_id,
                "source": "reconciliation",
                "kind": charge.kind,
                "currencyCode": charge.currency,
                "line": text,
            }
            sized_entity("pcInvoiceLines", entity)
            rows += 1
            if number % ingest.CHECKPOINT_LINES == 0:  # a checkpoint: the segment's tally is packed and dropped
                segment.packed()
                tally.merge(segment)
                segment = Tally()
        tally.merge(segment)
    return _cpu() - started, rss.growth_mb, rows, tally


def measure(count: int) -> dict[str, Any]:
    """CPU per line over a sample held in memory (ours and the baseline alike), then peak RSS growth over
    ``count`` lines generated one at a time."""
    sample = list(lines(min(count, CPU_SAMPLE)))
    base = min(baseline(sample) for _ in range(3))
    spent = min(ours(sample)[0] for _ in range(3))
    del sample
    _, growth, rows, tally = ours(lines(count))
    per_line = spent / min(count, CPU_SAMPLE)
    return {
        "lines": count,
        "lines_per_s": round(1 / per_line),
        "cpu_us_per_line": round(per_line * 1e6, 1),
        "baseline_us_per_line": round(base / min(count, CPU_SAMPLE) * 1e6, 1),
        "vs_baseline": round(spent / base, 2),
        "rss_growth_mb": round(growth, 1),
        "rows": rows,
        "subjects": len(tally.subjects),
        "customers": len(tally.customers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.billing", description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    print(json.dumps(measure(parser.parse_args().lines), indent=2))


if __name__ == "__main__":
    main()
