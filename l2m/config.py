"""One way to configure: defaults dict + named presets + `key=value` overrides; unknown keys are errors."""
from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Any, Iterable, Mapping


class ConfigError(ValueError):
    """A configuration key or value that the component does not know."""


def merge_conf(defaults: Mapping[str, Any], overrides: Mapping[str, Any] | None, where: str = "conf",
               strict: bool = True) -> dict:
    """Deep-merge `overrides` into a copy of `defaults`; a key absent from `defaults` raises ConfigError
    (``strict=False``: it is added, e.g. a preset changing a partial base preset, checked later).

    A default of None or an empty dict accepts any value (free-form sub-configs such as option dicts).
    """
    out = copy.deepcopy(dict(defaults))
    for key, value in (overrides or {}).items():
        if key not in out and strict:
            raise ConfigError(f"Unknown key {where}.{key}; known keys: {', '.join(sorted(out))}")
        if key in out and isinstance(out[key], dict) and out[key] and isinstance(value, Mapping):
            out[key] = merge_conf(out[key], value, f"{where}.{key}", strict)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_value(text: str) -> Any:
    """Parse a command-line value: Python/JSON literals when possible, else the raw string."""
    for parse in (ast.literal_eval, json.loads):
        try:
            return parse(text)
        except (ValueError, SyntaxError, json.JSONDecodeError):
            pass
    return text


def parse_overrides(items: Iterable[str]) -> dict:
    """Turn ["a.b=3", "name=x"] into {"a": {"b": 3}, "name": "x"}."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = parse_value(value)
    return out


def write_conf(conf: Mapping[str, Any], path: Path) -> Path:
    """Write a resolved config as JSON next to an output (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(conf, indent=2, sort_keys=True, default=str))
    tmp.replace(path)
    return path
