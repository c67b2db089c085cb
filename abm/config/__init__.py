"""Configuration: TOML -> validated, frozen, fully resolved :class:`Config`.

>>> from abm.config import load_config
>>> cfg = load_config("configs/default.toml")
>>> cfg.product.division_time_h
10.0
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from abm.config.files import read_toml
from abm.config.root import Config
from abm.schema import build, walk_params
from abm.errors import ConfigError

__all__ = ["Config", "ConfigError", "load_config", "config_from_dict", "to_toml", "to_json",
           "apply_overrides"]


def config_from_dict(data: dict, *, file: str | None = None) -> Config:
    """Validate a parsed table into a :class:`Config` (raises ConfigError)."""
    return build(Config, data, file=file)


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """Read, validate and resolve a TOML config file.

    Args:
        path: the TOML file.
        overrides: optional nested dict applied on top of the file's tables
            (e.g. ``{"run": {"seed": 3}}``).
    """
    path = Path(path)
    data = read_toml(path)
    if overrides:
        data = apply_overrides(data, overrides)
    return config_from_dict(data, file=repr(str(path))[1:-1])


def apply_overrides(data: dict, overrides: dict) -> dict:
    """Deep-merge ``overrides`` into a copy of ``data``."""
    out = dict(data)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = apply_overrides(out[k], v)
        else:
            out[k] = v
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        # a JSON string is a TOML basic string, except that JSON escapes characters
        # beyond the BMP as surrogate pairs (TOML refuses them: write them as they are)
        # and leaves DEL as it is (TOML refuses it raw)
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def to_toml(cfg: Config) -> str:
    """Fully resolved config as TOML text (every parameter, with its unit as a comment)."""
    lines: list[str] = []

    def emit(section, prefix):
        scalars, subs = [], []
        for name, value in section.to_dict().items():
            (subs if isinstance(value, dict) else scalars).append(name)
        if scalars:
            lines.append(f"[{prefix}]")
            meta = {f.name: f.metadata for f in dataclasses.fields(section)}
            for name in scalars:
                unit = meta[name].get("unit", "-")
                comment = f"  # {unit}" if unit not in ("-", None) else ""
                lines.append(f"{name} = {_toml_value(getattr(section, name))}{comment}")
            lines.append("")
        for name in subs:
            emit(getattr(section, name), f"{prefix}.{name}")

    for name in cfg.to_dict():
        emit(getattr(cfg, name), name)
    return "\n".join(lines)


def to_json(cfg: Config) -> str:
    return json.dumps(cfg.to_dict(), indent=1, sort_keys=False)
