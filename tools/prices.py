"""What resellers and customers are charged: add, list and remove the price rules the scoped API applies.

    python -m tools.prices list
    python -m tools.prices add reseller MPN_ID --basis list --adjust 10 [--adjust 5:category=Storage] [--from DAY]
    python -m tools.prices add customer CUSTOMER_ID --basis cost --adjust 15 [--adjust -2:kind=legacy]
    python -m tools.prices add default --basis list
    python -m tools.prices remove reseller MPN_ID --from DAY

``--basis``: ``list`` (Microsoft's retail price: ``UnitPrice`` x quantity; the rate card's price for legacy usage) or
``cost`` (what the partner pays). ``--adjust PERCENT[:category=NAME][:kind=KIND]``, repeatable: a percentage added
to the basis (negative: a discount), for every figure, or only for a meter/product category and/or a subscription
kind (``azure_plan``, ``legacy``, ``licence``); the most specific one that matches a figure applies. ``--from``: the
first day (UTC) it prices, default today; earlier days keep the rule in force then. The table is found as the
function app finds it (``USAGE_STORAGE__tableServiceUri`` with your own Azure sign-in, or ``USAGE_STORAGE`` for
Azurite) and ``TABLE_PREFIX``. A change is seen by the app within API_GRANTS_CACHE_SECONDS. Not deployed.
"""

from __future__ import annotations

import argparse
import decimal
import sys
from collections.abc import Sequence
from datetime import date, datetime, timezone
from decimal import Decimal

from shared.pricing.rules import Adjustment, Basis, PriceRule, Whom, add_rule, list_rules, remove_rule
from shared.settings import SettingsError
from shared.table_store import TableStore
from tools.grants import _store


def adjustment(text: str) -> Adjustment:
    """``PERCENT[:category=NAME][:kind=KIND]``."""
    percent, *parts = text.split(":")
    found: dict[str, str] = {}
    for part in parts:
        name, _, value = part.partition("=")
        if name not in ("category", "kind") or not value.strip() or name in found:
            raise ValueError(f"{text!r}: after the percentage, only category=NAME and kind=KIND, once each")
        found[name] = value.strip()
    try:
        number = Decimal(percent)
    except decimal.InvalidOperation:
        raise ValueError(f"{text!r} does not start with a percentage") from None
    if not number.is_finite() or number <= -100:
        raise ValueError(f"{text!r}: a percentage above -100")
    return Adjustment(number, found.get("category"), found.get("kind"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.prices", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every rule")
    add = commands.add_parser("add", help="add a rule (or replace the one of the same subject and day)")
    add.add_argument("whom", choices=[str(w) for w in Whom])
    add.add_argument("who", nargs="?", help="the reseller's MPN id or the customer id (not for default)")
    add.add_argument("--basis", choices=[str(b) for b in Basis], required=True)
    add.add_argument("--adjust", action="append", default=[], help="PERCENT[:category=NAME][:kind=KIND]")
    add.add_argument("--from", dest="effective_from", help="first day it prices, YYYY-MM-DD (default: today, UTC)")
    add.add_argument("--note", default="")
    remove = commands.add_parser("remove", help="remove one rule")
    remove.add_argument("whom", choices=[str(w) for w in Whom])
    remove.add_argument("who", nargs="?")
    remove.add_argument("--from", dest="effective_from", required=True)
    return parser


def _day(text: str | None) -> str:
    if text is None:
        return datetime.now(timezone.utc).date().isoformat()
    return date.fromisoformat(text).isoformat()


def main(argv: Sequence[str] | None = None, store: TableStore | None = None) -> int:
    """Run one command; 0 when done, 2 for a command that cannot be carried out (with one line why)."""
    args = _parser().parse_args(argv)
    try:
        store = store or _store()
        if args.command == "list":
            for rule in list_rules(store):
                adjustments = ", ".join(
                    f"{a.percent}%" + (f" {a.category}" if a.category else "") + (f" [{a.kind}]" if a.kind else "")
                    for a in rule.adjustments
                )
                when = f"from {rule.effective_from}"
                print(f"{rule.whom}\t{rule.who or '-'}\t{rule.basis}\t{when}\t{adjustments}\t{rule.note}")
            return 0
        if args.command == "remove":
            remove_rule(store, Whom(args.whom), args.who, _day(args.effective_from))
            print(f"removed the {args.whom} rule {args.who or ''} from {args.effective_from}".replace("  ", " "))
            return 0
        rule = PriceRule(
            whom=Whom(args.whom),
            who=args.who,
            basis=Basis(args.basis),
            effective_from=_day(args.effective_from),
            adjustments=tuple(adjustment(a) for a in args.adjust),
            note=args.note,
        )
        add_rule(store, rule)
        print(f"{rule.whom} {rule.who or ''} is priced on {rule.basis} from {rule.effective_from}".replace("  ", " "))
        return 0
    except (ValueError, SettingsError) as exc:
        print(f"tools.prices: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
