"""infra/main.bicep allows exactly what the app accepts, and defaults to what it defaults to: each setting's bounds,
words and default are declared once, in SETTINGS (schedules with their job in JOBS).

A parameter the Bicep allows and the app refuses (``utilizationLagHours`` 0, ``inventoryRefreshHours`` without a
maximum) deploys an app that fails at start. Pure text reading of the decorators: fast, no Bicep tooling needed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.settings import SETTINGS, ReadBy, Setting

MAIN = Path(__file__).resolve().parents[2] / "infra" / "main.bicep"
_PARAM = re.compile(r"param (\w+) (\w+)(?: = (.+))?$")
_APP_SETTING = re.compile(r"^\s+([A-Z][A-Za-z0-9_]*): (?:string\()?(\w+)\)?$")  # app settings: NAME or Name__x


@dataclass
class Param:
    """A Bicep parameter's type, default and value decorators."""

    type: str
    default: str | None
    min: int | None = None
    max: int | None = None
    allowed: list[str] = field(default_factory=list)


def parameters(text: str) -> dict[str, Param]:
    """Every ``param`` of a template, with the @minValue/@maxValue/@allowed written above it."""
    found: dict[str, Param] = {}
    pending: dict[str, int | list[str]] = {}
    lines = iter(text.splitlines())
    for line in lines:
        line = line.strip()
        if line.startswith("@minValue(") or line.startswith("@maxValue("):
            pending[line[1:4]] = int(line[line.index("(") + 1 : line.index(")")])
        elif line == "@allowed([":
            values = []
            for item in lines:
                if item.strip() == "])":
                    break
                values.append(item.strip().strip("'"))
            pending["allowed"] = values
        elif match := _PARAM.match(line):
            name, kind, default = match.groups()
            minimum, maximum, allowed = pending.get("min"), pending.get("max"), pending.get("allowed", [])
            assert isinstance(allowed, list) and not isinstance(minimum, list) and not isinstance(maximum, list)
            found[name] = Param(kind, None if default is None else default.strip("'"), minimum, maximum, allowed)
            pending = {}
    return found


def app_settings(text: str) -> dict[str, str]:
    """App setting name -> the parameter main.bicep sets it from (``NAME: param`` or ``NAME: string(param)``)."""
    return {m.group(1): m.group(2) for line in text.splitlines() if (m := _APP_SETTING.match(line))}


TEXT = MAIN.read_text(encoding="utf-8")
PARAMS, FROM = parameters(TEXT), app_settings(TEXT)
LIMITED = [s for s in SETTINGS if s.read_by == ReadBy.APP and (s.bounds or s.choices)]


def test_every_setting_with_limits_is_set_from_a_parameter():
    assert LIMITED and all(s.name in FROM and FROM[s.name] in PARAMS for s in LIMITED)


@pytest.mark.parametrize("setting", LIMITED, ids=lambda s: s.name)
def test_the_parameter_allows_what_the_app_accepts_and_defaults_to_its_default(setting: Setting):
    param = PARAMS[FROM[setting.name]]
    bounds, choices = setting.bounds, setting.choices
    if choices is not None:
        assert param.allowed == list(choices) and param.min is None and param.max is None
    elif bounds is not None and bounds.allowed is not None:
        assert param.allowed == [str(v) for v in bounds.allowed] and param.min is None and param.max is None
    else:
        assert bounds is not None and not param.allowed
        # Bicep numbers are whole: the parameter's range is the whole numbers within the app's range.
        assert (param.min, param.max) == (math.ceil(bounds.low), math.floor(bounds.high)), setting.name


OWN = {name: param for name, param in FROM.items() if list(FROM.values()).count(param) == 1}
DEFAULTED = [s for s in SETTINGS if s.name in OWN and PARAMS[OWN[s.name]].default is not None]


@pytest.mark.parametrize("setting", DEFAULTED, ids=lambda s: s.name)
def test_a_parameter_of_its_own_defaults_to_the_setting_s_default(setting: Setting):
    default = PARAMS[OWN[setting.name]].default
    assert default is not None and setting.parse(setting.name, default) == setting.read({})


def test_every_schedule_and_every_limited_setting_has_a_parameter_of_its_own_with_a_default():
    schedules = {s.name for s in SETTINGS if s.read_by == ReadBy.HOST}
    assert schedules | {s.name for s in LIMITED} <= {s.name for s in DEFAULTED}


def test_the_reader_finds_every_decorator():
    text = "@minValue(2)\n@maxValue(72)\nparam lag int = 6\n@allowed([\n  'a'\n  'b'\n])\nparam word string = 'a'\n"
    assert parameters(text) == {"lag": Param("int", "6", 2, 72), "word": Param("string", "a", allowed=["a", "b"])}
