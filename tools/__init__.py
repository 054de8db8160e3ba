"""Operator tools run from a workstation, never deployed (``.funcignore`` keeps ``tools/`` out of the package)."""
