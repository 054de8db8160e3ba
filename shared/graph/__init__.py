"""Microsoft Graph partner billing: the rated-usage export (client, operations, manifests, blobs)."""
