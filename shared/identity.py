"""Azure credentials: a user-assigned managed identity when its client id is set, else the default chain."""

from __future__ import annotations

from typing import Any


def azure_credential(client_id: str = "") -> Any:
    """The credential for Table Storage and Key Vault in Azure."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if client_id:
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential()
