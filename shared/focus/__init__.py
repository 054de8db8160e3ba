"""The FOCUS dataset: the stored cost as FOCUS 1.2 Parquet in the app's storage account, for FinOps tools."""
