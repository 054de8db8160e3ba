"""``local.settings.json`` values as the Functions host would apply them: the environment wins."""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def apply_local_settings(env: MutableMapping[str, str] | None = None, path: Path | None = None) -> list[str]:
    """Copy ``Values`` from local.settings.json into ``env`` where not already set; returns the names added."""
    env = os.environ if env is None else env
    path = path or REPO_ROOT / "local.settings.json"
    if not path.exists():
        return []
    values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    added = []
    for name, value in values.items():
        if name not in env and isinstance(value, str):
            env[name] = value
            added.append(name)
    return added
