"""The function app as the Functions host sees it: v1 function folders, their bindings and entry points.

Shared by ``devhost serve`` (HTTP functions) and ``devhost trigger`` (timer functions).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

REPO_ROOT = Path(__file__).resolve().parent.parent
_SETTING_REF = re.compile(r"%([^%\s]+)%")


class FunctionAppError(Exception):
    """A function folder, its function.json or a setting it references is not usable; the message says which."""


@dataclass(frozen=True)
class FunctionSpec:
    """One function folder: its name, bindings, trigger binding and entry point."""

    name: str
    folder: Path
    bindings: tuple[Mapping[str, Any], ...]
    trigger: Mapping[str, Any]
    script_file: str = "__init__.py"
    entry_point: str = "main"
    disabled: bool = False

    @property
    def trigger_type(self) -> str:
        """``httpTrigger``, ``timerTrigger``, ..."""
        return str(self.trigger.get("type", ""))

    @property
    def module_name(self) -> str:
        """The module Azure imports: the folder as a package, or a script inside it."""
        stem = Path(self.script_file).stem
        return self.name if stem == "__init__" else f"{self.name}.{stem}"


def load_spec(folder: Path) -> FunctionSpec:
    """Read one folder's function.json."""
    path = folder / "function.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FunctionAppError(f"{path}: cannot read function.json: {exc}") from exc
    if not isinstance(config, dict) or not isinstance(config.get("bindings"), list):
        raise FunctionAppError(f"{path}: function.json has no bindings list")
    bindings = tuple(MappingProxyType(dict(b)) for b in config["bindings"] if isinstance(b, dict))
    triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
    if len(triggers) != 1:
        raise FunctionAppError(f"{path}: expected exactly one trigger binding, found {len(triggers)}")
    script_file = str(config.get("scriptFile") or "__init__.py")
    if Path(script_file).suffix != ".py" or Path(script_file).name != script_file:
        raise FunctionAppError(f"{path}: scriptFile {script_file!r} must be a .py file in the function folder")
    return FunctionSpec(
        name=folder.name,
        folder=folder,
        bindings=bindings,
        trigger=triggers[0],
        script_file=script_file,
        entry_point=str(config.get("entryPoint") or "main"),
        disabled=bool(config.get("disabled", False)),
    )


def discover(root: Path = REPO_ROOT) -> list[FunctionSpec]:
    """Every function folder directly under ``root`` (a folder holding function.json), by name."""
    return [
        load_spec(folder)
        for folder in sorted(root.iterdir())
        if folder.is_dir() and not folder.name.startswith(".") and (folder / "function.json").is_file()
    ]


def load_main(spec: FunctionSpec) -> Callable[..., Any]:
    """Import the function's module as Azure does (app root on sys.path) and return its entry point."""
    root = str(spec.folder.parent.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        module = importlib.import_module(spec.module_name)
    except ImportError as exc:
        raise FunctionAppError(f"{spec.name}: cannot import {spec.module_name}: {exc}") from exc
    entry = getattr(module, spec.entry_point, None)
    if not callable(entry):
        raise FunctionAppError(f"{spec.name}: {spec.module_name} has no callable {spec.entry_point!r}")
    return cast(Callable[..., Any], entry)


def resolve_setting_refs(value: str, env: Mapping[str, str]) -> str:
    """``%NAME%`` replaced by the app setting NAME, as the host resolves binding properties."""

    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise FunctionAppError(f"app setting {name} (referenced as %{name}%) is not set")
        return env[name]

    return _SETTING_REF.sub(setting, value)
