"""Benchmarks: ``python -m bench --mode quick|full`` (see ``bench.__main__``).

Everything runs on loopback against Azurite (in memory) and the Partner Center simulator; results are
ratios against a minimum or a baseline measured in the same process, never wall-clock thresholds.
"""
