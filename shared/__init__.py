"""Shared code of the Partner Center usage function app: client, table store, sync jobs, HTTP API."""
