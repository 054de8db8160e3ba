"""The FOCUS dataset as its users read it: written by the timers into Azurite's blob service, read back with DuckDB.

DuckDB reads the files as a FinOps engine would (``read_parquet`` over the period folders, hive-partitioned); here
over a local copy of the container, since DuckDB's Azure extension is downloaded at run time and this machine
reaches no such download (the README gives both ways).
"""

from __future__ import annotations

import decimal
import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from azure.storage.blob import ContainerClient

from devhost.simulator.billing import reseller_of
from shared.access.grants import add_grant, remove_grant
from shared.deadline import NO_DEADLINE
from shared.focus import writer
from shared.focus.columns import COLUMNS, MANDATORY, MONEY_PRECISION, MONEY_SCALE, SERVICE_CATEGORIES
from shared.focus.dataset import PeriodData
from shared.focus.grants import container_name
from shared.focus.writer import FOCUS_STATE, STATE_PARTITION, file_name, mark_changed, write_marked
from shared.pricing.amounts import EXACT
from shared.pricing.rules import Adjustment, Basis, PriceRule, Whom, add_rule, remove_rule
from shared.settings import Settings
from shared.table_store import TableStore
from shared.tables import Grant, GrantKind
from tests.api_data import get
from tests.rated_support import NOW
from tests.spend_support import every_timer_once
from tests.sync_support import run_job

PERIOD = "2026-11"


@pytest.fixture(scope="module")
def world(azurite, azurite_blob) -> Iterator[dict[str, Any]]:
    container = "focus-" + uuid.uuid4().hex[:12]
    blob = {"USAGE_BLOB": azurite_blob.connection_string, "FOCUS_CONTAINER": container}
    with every_timer_once(azurite, azurite_blob, "fo", **blob) as (sim, store, env):
        client = ContainerClient.from_connection_string(azurite_blob.connection_string, container)
        yield {"sim": sim, "store": store, "env": env, "container": client}
        client.delete_container()


def local_copy(container: ContainerClient, into: Path) -> Path:
    """The container's blobs as files (what `az storage blob download-batch` makes)."""
    for item in container.list_blobs():
        target = into / item.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(container.download_blob(item.name).readall())
    return into


def query(root: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect() as db:
        db.execute(f"CREATE VIEW focus AS SELECT * FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)")
        return db.execute(sql).fetchall()


HALF_UNIT = Decimal(1).scaleb(-MONEY_SCALE) / 2


def fitted_costs(store: TableStore) -> dict[tuple[str, str, str], Decimal]:
    """Per customer, currency and day: the sum of the stored cost amounts, each rounded half to even to the
    dataset's decimals (what its rows hold)."""
    found: dict[tuple[str, str, str], Decimal] = {}
    for subject in PeriodData.read(store, PERIOD).subjects:
        if not subject.days:
            continue  # a period total (a charge): one row over the month, not a day's
        for day, amounts in subject.amounts.items():
            key = (subject.customer_id, subject.currency, day)
            for cost, _ in amounts.values():
                fitted = Decimal(cost or 0).quantize(Decimal(1).scaleb(-MONEY_SCALE), rounding=decimal.ROUND_HALF_EVEN)
                found[key] = exact([found.get(key, 0), fitted])
    return found


def exact(values: Any) -> Decimal:
    with decimal.localcontext(EXACT):
        return sum((Decimal(v) for v in values), Decimal(0))


def test_daily_totals_per_customer_and_currency_equal_the_api_digit_for_digit(world, tmp_path):
    store, sim = world["store"], world["sim"]
    root = local_copy(world["container"], tmp_path)
    manifest = json.loads((root / f"v1.2/billingPeriod={PERIOD}/manifest.json").read_text())
    rounded = sum(f["roundedAmounts"] for f in manifest["files"])
    daily = query(
        root,
        "SELECT x_CustomerId, BillingCurrency, CAST(ChargePeriodStart AS DATE)::VARCHAR, SUM(BilledCost) FROM focus "
        f"WHERE billingPeriod = '{PERIOD}' AND ChargePeriodEnd - ChargePeriodStart = INTERVAL 1 DAY GROUP BY ALL",
    )
    undated = query(
        root,
        "SELECT x_CustomerId, BillingCurrency, SUM(BilledCost) FROM focus "
        f"WHERE billingPeriod = '{PERIOD}' AND ChargePeriodEnd - ChargePeriodStart > INTERVAL 1 DAY GROUP BY ALL",
    )
    found = {(c, cur, d): v for c, cur, d, v in daily}
    whole = {(c, cur): v for c, cur, v in undated}
    stored = fitted_costs(store)
    compared, rows = (
        0,
        dict(query(root, "SELECT x_CustomerId || CAST(ChargePeriodStart AS DATE), count(*) FROM focus GROUP BY ALL")),
    )
    for customer in sim.world.customers():
        body = get(store, f"/api/v1/customers/{customer.id}/spend?from=2026-11-01&to=2026-11-30", now=NOW).json()
        for currency in body["currencies"]:
            code = currency["currencyCode"]
            for point in currency["series"]:
                day = point["date"]
                figure = found.pop((customer.id, code, day))
                # every digit of the stored amounts, each in the column's 24 decimals: the API's figure within the
                # half-units of those roundings (none where no amount needed it)
                assert figure == stored[(customer.id, code, day)], (customer.index, point)
                slack = Decimal(rows[customer.id + day]) * HALF_UNIT if rounded else Decimal(0)
                assert abs(figure - point["amount"]) <= slack, (customer.index, point)
                compared += 1
            assert whole.pop((customer.id, code), Decimal(0)) == currency["undatedTotal"]
    assert compared > 30 and not found and not whole  # every row is some customer's figure
    # Partner Center's own amounts (rated usage, ~20 significant digits) fit the columns whole: per Azure plan and
    # day the dataset is the API's figure digit for digit (the roundings above are the simulator's legacy prices,
    # products of 22-decimal quantities and rates, which no 38-digit decimal holds)
    rated = {
        (sid, day): value
        for sid, day, value in query(
            root,
            "SELECT x_SubscriptionId, CAST(ChargePeriodStart AS DATE)::VARCHAR, SUM(BilledCost) FROM focus "
            f"WHERE billingPeriod = '{PERIOD}' AND x_Source = 'ratedUsage' GROUP BY ALL",
        )
    }
    exact_days = 0
    for customer in sim.world.customers():
        body = get(store, f"/api/v1/customers/{customer.id}/spend?from=2026-11-01&to=2026-11-30", now=NOW).json()
        for subscription in (s for s in body["subscriptions"] if s["source"] == "ratedUsage"):
            for point in (p for c in subscription["currencies"] for p in c["series"]):
                assert rated.pop((subscription["subscriptionId"], point["date"])) == point["amount"], point
                exact_days += 1
    assert exact_days > 10 and not rated


def test_every_focus_column_is_there_with_its_type_and_every_rule_holds(world, tmp_path):
    root = local_copy(world["container"], tmp_path)
    files = sorted(root.rglob("*.parquet"))
    assert files
    for path in files:
        schema = pq.read_schema(path)
        assert schema.names == [c.name for c in COLUMNS]
        for column in COLUMNS:
            kind = str(schema.field(column.name).type)
            expected = {
                "Decimal": f"decimal128({MONEY_PRECISION}, {MONEY_SCALE})",
                "DateTime": "timestamp[us, tz=UTC]",
                "Boolean": "bool",
            }.get(column.kind, "string")
            assert kind == expected, column.name
    for column in COLUMNS:
        if not column.nullable:
            assert query(root, f"SELECT count(*) FROM focus WHERE {column.name} IS NULL") == [(0,)], column.name
        if column.allowed:
            allowed = ", ".join(f"'{v}'" for v in column.allowed)
            bad = query(root, f"SELECT DISTINCT {column.name} FROM focus WHERE {column.name} NOT IN ({allowed})")
            assert bad == [], (column.name, bad)
        if column.why_null:
            assert query(root, f"SELECT count(*) FROM focus WHERE {column.name} IS NOT NULL") == [(0,)], column.name
    assert set(MANDATORY) >= {"BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "ServiceCategory"}
    rules = {
        "a charge period within its billing period": "ChargePeriodStart < BillingPeriodStart "
        "OR ChargePeriodEnd > BillingPeriodEnd OR ChargePeriodStart >= ChargePeriodEnd",
        "billing periods are calendar months": "date_trunc('month', BillingPeriodStart) <> BillingPeriodStart "
        "OR BillingPeriodEnd <> BillingPeriodStart + INTERVAL 1 MONTH",
        "no commitment discounts: effective and contracted cost are the billed cost": "EffectiveCost <> BilledCost "
        "OR ContractedCost <> BilledCost",
        "list cost from list prices, or the cost where none is known": "(x_ListCostSource = 'cost' "
        "AND ListCost <> BilledCost) OR x_ListCostSource NOT IN ('list', 'cost')",
        "usage is usage-based": "ChargeCategory = 'Usage' AND ChargeFrequency <> 'Usage-Based'",
        "only usage and purchases (licences, reservations, marketplace: recurring)": "ChargeCategory NOT IN "
        "('Usage', 'Purchase') OR (ChargeCategory = 'Purchase' AND ChargeFrequency <> 'Recurring')",
        "currencies are ISO codes": "NOT regexp_full_match(BillingCurrency, '[A-Z]{3}')",
        "every row names its customer and source": "x_CustomerId IS NULL OR x_Source IS NULL OR x_Status IS NULL",
    }
    for rule, violation in rules.items():
        assert query(root, f"SELECT count(*) FROM focus WHERE {violation}") == [(0,)], rule
    assert set(SERVICE_CATEGORIES) >= {r[0] for r in query(root, "SELECT DISTINCT ServiceCategory FROM focus")}
    listed = query(root, "SELECT count(*) FROM focus WHERE x_ListCostSource = 'list' AND ListCost > BilledCost")
    assert listed[0][0] > 0  # partner earned credit and the rate card's discount: list above cost


def account(world: dict[str, Any]) -> str:
    """The billing account the timers write (the partner's tenant)."""
    return Settings.from_env(world["env"]).tenant_id


def _etags(container: ContainerClient) -> dict[str, str]:
    return {item.name: str(item.etag) for item in container.list_blobs() if item.name.endswith(".parquet")}


def test_a_period_that_did_not_change_is_not_written_again(world):
    store, container, env = world["store"], world["container"], world["env"]
    before = _etags(container)
    run = run_job("fetch_usage_records", Settings.from_env(env), store, NOW + timedelta(minutes=5))
    assert not run.errors
    mark_changed(store, [PERIOD], NOW)  # marked, as a projection of unchanged data marks it
    stats = write_marked(store, container, billing_account=account(world), now=NOW, deadline=NO_DEADLINE)
    assert stats.periods == [PERIOD] and stats.files_written == 0
    assert stats.files_unchanged == len([n for n in before if PERIOD in n])
    assert _etags(container) == before


class _Crashing:
    """The container, but an upload that dies after its first blocks (as a host killed mid-upload)."""

    def __init__(self, container: ContainerClient) -> None:
        self.container = container

    def upload_blob(self, name: str, data: bytes, **_: Any) -> None:
        class Dying(io.RawIOBase):
            at = 0

            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                if self.at >= 2048:
                    raise OSError("the host stopped the function")
                chunk = data[self.at : self.at + min(len(buffer), 1024)]
                buffer[: len(chunk)] = chunk
                self.at += len(chunk)
                return len(chunk)

        self.container.upload_blob(
            name, io.BufferedReader(Dying()), overwrite=True, max_single_put_size=1024, max_block_size=1024
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.container, name)


def test_a_crash_mid_write_leaves_the_previous_dataset_readable_whole(world, tmp_path):
    store, container = world["store"], world["container"]
    currency = next(n for n in _etags(container) if PERIOD in n).rsplit("-", 1)[1].removesuffix(".parquet")
    name = file_name(PERIOD, currency)
    before = container.download_blob(name).readall()
    state = store.get(FOCUS_STATE, STATE_PARTITION, PERIOD)
    assert state is not None
    store.upsert_one(FOCUS_STATE, {**state, "digests": "{}"})  # as if its content had changed
    mark_changed(store, [PERIOD], NOW + timedelta(hours=1))
    with pytest.raises(OSError, match="stopped"):
        write_marked(store, _Crashing(container), billing_account=account(world), now=NOW, deadline=NO_DEADLINE)
    after = container.download_blob(name).readall()
    assert hashlib.sha256(after).digest() == hashlib.sha256(before).digest()
    assert pq.read_table(io.BytesIO(after)).num_rows > 0  # whole, readable
    again = store.get(FOCUS_STATE, STATE_PARTITION, PERIOD)
    assert again is not None and again["writtenFor"] != again["change"]  # still marked: the next run writes it
    stats = write_marked(store, container, billing_account=account(world), now=NOW, deadline=NO_DEADLINE)
    assert stats.periods == [PERIOD] and stats.files_written >= 1


def test_the_writer_is_off_without_a_blob_endpoint_or_when_switched_off():
    assert not writer.enabled(Settings.from_env({"USAGE_BLOB": ""}))
    assert not writer.enabled(Settings.from_env({"USAGE_BLOB": "UseDevelopmentStorage=true", "FOCUS_DATASET": "false"}))
    assert writer.enabled(Settings.from_env({"USAGE_BLOB__blobServiceUri": "https://a.blob.core.windows.net"}))


def test_a_stored_month_without_a_store_of_its_own_is_not_needed(world):
    """The dataset is rebuilt from the spend read model: the writer keeps only marks and digests."""
    store: TableStore = world["store"]
    rows = list(store.partition(FOCUS_STATE, STATE_PARTITION))
    assert PERIOD in [r["RowKey"] for r in rows]
    assert set(rows[0]) >= {"change", "changedAt", "writtenFor", "digests", "writtenAt"}


def test_a_grants_dataset_holds_its_rows_at_its_price_and_follows_a_rule_change(world, tmp_path, azurite_blob):
    store, sim, container = world["store"], world["sim"], world["container"]
    customer = sim.world.customer(1)  # sold by a reseller, with partner earned credit
    reseller = reseller_of(sim.world, customer)
    grant = Grant("tenant-of-the-reseller", "its-portal", GrantKind.RESELLERS, frozenset({reseller}))
    add_grant(store, grant)
    markup = PriceRule(
        whom=Whom.RESELLER, who=reseller, basis=Basis.LIST, effective_from="2026-01-01",
        adjustments=(Adjustment(Decimal(10)),),
    )  # fmt: skip
    add_rule(store, markup)
    made: dict[str, ContainerClient] = {}

    def grant_container(name: str) -> ContainerClient:
        client = ContainerClient.from_connection_string(azurite_blob.connection_string, name)
        if name not in made:
            client.create_container()
            made[name] = client
        return client

    def write() -> Any:
        return write_marked(
            store, container, billing_account=account(world), now=NOW, deadline=NO_DEADLINE,
            grant_containers=grant_container, grant_base=container.container_name,
        )  # fmt: skip

    mine = [s for s in PeriodData.read(store, PERIOD).subjects if s.reseller == reseller]
    try:
        assert write().files_written > 0  # a new grant: every period written again, its files too
        name = container_name(container.container_name, grant)
        assert list(made) == [name]
        root = local_copy(made[name], tmp_path / "grant")
        assert query(root, "SELECT DISTINCT x_ResellerId, x_Figures FROM focus") == [(reseller, "price")]
        for factor in ("1.1", "1.2"):
            days = (
                f"SELECT DISTINCT CAST(ChargePeriodStart AS DATE)::VARCHAR FROM focus WHERE billingPeriod = '{PERIOD}'"
            )
            for (day,) in query(root, days):
                (found, rows), *_ = query(
                    root, f"SELECT SUM(BilledCost), count(*) FROM focus WHERE CAST(ChargePeriodStart AS DATE) = '{day}'"
                )
                listed = exact(p[1] for s in mine for p in s.amounts.get(day, {}).values() if p[1] is not None)
                with decimal.localcontext(EXACT):
                    assert abs(found - listed * Decimal(factor)) <= rows * HALF_UNIT * 2, (factor, day)
            partner = local_copy(container, tmp_path / f"partner{factor}")
            same = query(
                root,
                f"SELECT count(*) FROM focus g JOIN read_parquet('{partner}/v1.2/billingPeriod={PERIOD}/*.parquet') p "
                "USING (SubAccountId, ChargePeriodStart, ServiceName) WHERE g.BilledCost = p.BilledCost",
            )
            assert same == [(0,)]  # its price, never the partner's cost
            add_rule(store, replace(markup, adjustments=(Adjustment(Decimal(20)),)))  # the rule changes
            stats = write()
            assert factor == "1.2" or stats.files_written > 0  # its files follow the rule without new data
            root = local_copy(made[name], tmp_path / f"grant{factor}")
    finally:
        remove_grant(store, grant.tenant_id, grant.app_id)
        remove_rule(store, Whom.RESELLER, reseller, "2026-01-01")
        for client in made.values():
            client.delete_container()
