"""The run skeleton of a per-subscription job: which subscriptions, in what order, with what state.

A job gives the subscription kinds it covers (and why it skips the others), the SyncState partition of its
per-subscription state, the state field that says how stale a subscription is, and the work for one
subscription. The skeleton loads the stored inventory, orders it stalest first, runs the work
SYNC_CONCURRENCY at a time within the run's budget, and sends the state rows the work saved, however the run ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.partner_center import PartnerCenterError
from shared.sync.context import RunContext
from shared.sync.inventory import load_subscriptions
from shared.sync.state import StateWriter, load_states, stalest_first
from shared.sync.workers import for_each
from shared.tables import Subscription, SubscriptionKind

NO_RELATIONSHIP = "no relationship with this customer (403/20002)"

# The work for one subscription: its stored state, and where to save the new state. True when fully done.
Work = Callable[[Subscription, Mapping[str, Any], StateWriter], bool]


@dataclass(frozen=True)
class Coverage:
    """Which subscriptions a job syncs, and the reason it names for the kinds it skips on purpose."""

    kinds: frozenset[SubscriptionKind]
    skip_reasons: Mapping[SubscriptionKind, str] = field(default_factory=dict)


def sync_each_subscription(
    ctx: RunContext,
    *,
    coverage: Coverage,
    state_partition: str,
    staleness_field: str,
    work: Work,
) -> None:
    """Run ``work`` for every covered subscription, stalest first; counts done and pending subscriptions."""
    store, settings, run = ctx.store, ctx.settings, ctx.run
    subscriptions = []
    for sub in load_subscriptions(store, settings):
        if sub.kind in coverage.kinds:
            subscriptions.append(sub)
        elif sub.kind in coverage.skip_reasons:
            run.skip(sub.label, coverage.skip_reasons[sub.kind])
    states = load_states(store, state_partition)

    with StateWriter(store, state_partition) as state_writer:  # sends what is queued however the run ends

        def one(sub: Subscription) -> bool:
            try:
                return work(sub, states.get(sub.key, {}), state_writer)
            except PartnerCenterError as exc:
                if not exc.is_no_relationship:
                    raise
                run.skip(sub.label, NO_RELATIONSHIP)
                return True

        done, pending = for_each(
            run,
            stalest_first(subscriptions, states, staleness_field),
            one,
            concurrency=settings.sync_concurrency,
            name=lambda s: s.label,
        )
    run.add(done=done, pending=pending)
