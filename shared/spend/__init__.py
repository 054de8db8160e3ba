"""The spend read model: what each customer and subscription spent per day and month, computed at ingest."""
