"""Who may read what through /api/scoped/: add, list and remove the grants of portal applications.

    python -m tools.grants list
    python -m tools.grants add TENANT_ID APP_ID all [--note TEXT]
    python -m tools.grants add TENANT_ID APP_ID resellers MPN_ID [MPN_ID ...] [--note TEXT]
    python -m tools.grants add TENANT_ID APP_ID customers CUSTOMER_ID [CUSTOMER_ID ...] [--note TEXT]
    python -m tools.grants remove TENANT_ID APP_ID

APP_ID is the portal's application (client) id, the ``azp``/``appid`` of its tokens, and TENANT_ID the tenant
its tokens come from (their ``tid``: the partner's, or a reseller's own when the API app is multi-tenant). Both
are named every time: the same multi-tenant application has the same id in every tenant, and a grant is for one.
``list`` also shows rows stored before grants named a tenant: they grant nothing until added again with their
tenant (which replaces them). The grants table is found as the function app finds it:
``USAGE_STORAGE__tableServiceUri`` with your own Azure sign-in (``az login`` or ``azd auth login``; you need
Storage Table Data Contributor on the account), or ``USAGE_STORAGE`` (Azurite) locally, and ``TABLE_PREFIX``.
A change is seen by the app within API_GRANTS_CACHE_SECONDS. Not deployed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from azure.data.tables import TableServiceClient

from shared.access.grants import Grant, GrantKind, add_grant, list_grants, normalise, remove_grant
from shared.api.params import is_guid
from shared.settings import Settings, SettingsError
from shared.table_store import TableStore


def _store() -> TableStore:
    settings = Settings.from_env()
    if settings.storage_connection_string:
        return TableStore.from_settings(settings)
    if not settings.table_service_uri:
        raise SettingsError("set USAGE_STORAGE__tableServiceUri (Azure) or USAGE_STORAGE (Azurite)")
    from azure.identity import DefaultAzureCredential  # the admin's own sign-in, not the app's identity

    service = TableServiceClient(endpoint=settings.table_service_uri, credential=DefaultAzureCredential())
    return TableStore(service, prefix=settings.table_prefix)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.grants", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every grant, and the rows that grant nothing")
    add = commands.add_parser("add", help="add or replace an application's grant")
    add.add_argument("tenant_id", help="the tenant of the application's tokens (their tid)")
    add.add_argument("app_id", help="the portal application's client id")
    add.add_argument("kind", choices=[str(k) for k in GrantKind])
    add.add_argument("ids", nargs="*", help="reseller MPN ids, or customer ids")
    add.add_argument("--note", default="", help="who it is, for the next admin")
    add.add_argument(
        "--show-cost",
        action="store_true",
        help="let it read the partner's cost (otherwise it sees prices under its price rule only: tools.prices)",
    )
    remove = commands.add_parser("remove", help="remove an application's grant")
    remove.add_argument("tenant_id")
    remove.add_argument("app_id")
    return parser


def _list(store: TableStore) -> None:
    listing = list_grants(store)
    for grant in listing.grants:
        values = ",".join(sorted(grant.values)) or "-"
        cost = "\tshows cost" if grant.show_cost else ""
        print(f"{grant.tenant_id}\t{grant.app_id}\t{grant.kind}\t{values}\t{grant.note}{cost}")
    for row in listing.unusable:
        print(f"?\t{row.app_id}\t(grants nothing: {row.why})")


def main(argv: Sequence[str] | None = None, store: TableStore | None = None) -> int:
    """Run one command; 0 when done, 2 for a command that cannot be carried out (with one line why)."""
    args = _parser().parse_args(argv)
    try:
        store = store or _store()
        if args.command == "list":
            _list(store)
            return 0
        if not is_guid(args.tenant_id):
            raise ValueError(f"{args.tenant_id!r} is not a tenant id")
        if not is_guid(args.app_id):
            raise ValueError(f"{args.app_id!r} is not an application (client) id")
        if args.command == "remove":
            remove_grant(store, args.tenant_id, args.app_id)
            print(f"removed the grant of {args.app_id.lower()} of tenant {args.tenant_id.lower()}")
            return 0
        if args.kind == "customers" and not all(is_guid(i) for i in args.ids):
            raise ValueError("customer ids are GUIDs")
        grant = Grant(args.tenant_id, args.app_id, GrantKind(args.kind), normalise(args.ids), args.note, args.show_cost)
        add_grant(store, grant)
        print(
            f"{grant.app_id} of tenant {grant.tenant_id} may read {grant.kind}"
            + (f": {', '.join(sorted(grant.values))}" if grant.values else "")
        )
        return 0
    except (ValueError, SettingsError) as exc:
        print(f"tools.grants: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
