"""Session-wide real parts: one Azurite for the whole run; each test gets its own tables."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.data.tables import TableServiceClient

from devhost.azurite import (
    Azurite,
    AzuriteBlob,
    AzuriteQueue,
    running_azurite,
    running_azurite_blob,
    running_azurite_queue,
)
from devhost.simulator import Simulator, WorldConfig
from tests.rated_support import NOW
from tests.stores import CountingStore, drop_tables


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's table service on a free loopback port, in memory, for the whole session."""
    with running_azurite() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def azurite_blob() -> Iterator[AzuriteBlob]:
    """Azurite's blob service (the simulated Graph billing export's files), in memory, for the whole session."""
    with running_azurite_blob() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def azurite_queue() -> Iterator[AzuriteQueue]:
    """Azurite's queue service (the rated-ingest queue), in memory, for the whole session."""
    with running_azurite_queue() as emulator:
        yield emulator


@pytest.fixture
def billing_sim(azurite_blob: AzuriteBlob) -> Iterator[Simulator]:
    """The simulator with the Graph billing export (its blobs in Azurite): four customers, one forbidden, at
    ``rated_support.NOW``."""
    world = WorldConfig(now=NOW, customers=4, forbidden_customers=1)
    with Simulator(world=world, blob_connection_string=azurite_blob.connection_string) as simulator:
        yield simulator


@pytest.fixture
def table_prefix() -> str:
    """A table-name prefix no other test uses."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def store(azurite: Azurite, table_prefix: str) -> Iterator[CountingStore]:
    """A TableStore on Azurite whose tables are this test's own, deleted afterwards."""
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    table_store = CountingStore(service, prefix=table_prefix)
    yield table_store
    drop_tables(table_store)
