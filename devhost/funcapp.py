"""The function app as the Functions host sees it: v1 function folders, their bindings and entry points.

Shared by ``devhost serve`` (HTTP functions), ``devhost trigger`` (timer functions) and ``drain_queues``
(queue-triggered functions, on Azurite's queue service, as ``devhost up`` and the tests run them).
"""

from __future__ import annotations

import importlib
import json
import logging
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


# -- queue-triggered functions --------------------------------------------------------------------------------------


@dataclass
class Drained:
    """What ``drain_queues`` did: messages handled, failed tries (retried), messages moved to a poison queue."""

    handled: int = 0
    failed: int = 0
    poisoned: int = 0


def max_dequeue_count(root: Path = REPO_ROOT) -> int:
    """host.json's ``extensions.queues.maxDequeueCount`` (5, the host's default, when absent)."""
    try:
        host = json.loads((root / "host.json").read_text(encoding="utf-8"))
        return int(host["extensions"]["queues"]["maxDequeueCount"])
    except (OSError, ValueError, KeyError, TypeError):
        return 5


def queue_specs(root: Path = REPO_ROOT) -> list[FunctionSpec]:
    """Every enabled queue-triggered function folder."""
    return [spec for spec in discover(root) if spec.trigger_type == "queueTrigger" and not spec.disabled]


def drain_queues(
    env: Mapping[str, str],
    *,
    root: Path = REPO_ROOT,
    limit: int = 10_000,
    handle: Callable[[FunctionSpec, Any], None] | None = None,
) -> Drained:
    """Run every queue-triggered function on its queue's messages, as the host does, until the queues are empty.

    Each function's queue is its binding's ``queueName`` (``%SETTING%`` resolved) on the account of its
    ``connection`` setting (a connection string: Azurite). A message is handed to ``main`` as a
    ``QueueMessage`` (base64, as the host's default ``messageEncoding``) with its dequeue count; it is deleted
    when ``main`` returns, made visible again when it raises, and moved to ``{queue}-poison`` once it failed
    host.json's ``maxDequeueCount`` times. ``handle(spec, message)``, when given, is called instead of ``main``
    (tests: the same handling with an injected clock)."""
    import azure.functions.queue as func_queue
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    drained = Drained()
    most = max_dequeue_count(root)
    bound = []
    for spec in queue_specs(root):
        name = resolve_setting_refs(str(spec.trigger.get("queueName", "")), env)
        setting = str(spec.trigger.get("connection") or "AzureWebJobsStorage")
        if not env.get(setting):
            continue  # no queue configured: nothing is ever sent to it either
        queue, poison = (
            QueueClient.from_connection_string(
                env[setting],
                queue_name,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
            )
            for queue_name in (name, name + "-poison")
        )
        for client in (queue, poison):
            try:
                client.create_queue()
            except ResourceExistsError:
                pass
        bound.append((spec, load_main(spec), queue, poison))
    while drained.handled + drained.failed < limit:
        busy = False
        for spec, main, queue, poison in bound:
            for message in queue.receive_messages(max_messages=1, visibility_timeout=60):
                busy = True
                body = str(message.content)
                argument = func_queue.QueueMessage(  # type: ignore[no-untyped-call]
                    id=message.id, body=body.encode("utf-8"), dequeue_count=message.dequeue_count
                )
                try:
                    if handle is not None:
                        handle(spec, argument)
                    else:
                        main(**{str(spec.trigger["name"]): argument})
                except Exception as exc:
                    drained.failed += 1
                    if (message.dequeue_count or 1) >= most:
                        poison.send_message(body)
                        queue.delete_message(message)
                        drained.poisoned += 1
                    else:
                        queue.update_message(message, visibility_timeout=0)
                    logging.getLogger("devhost").warning("%s failed on a message: %s", spec.name, exc)
                    continue
                queue.delete_message(message)
                drained.handled += 1
        if not busy:
            break
    return drained
