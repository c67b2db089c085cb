"""TOML text for a resolved batch (``<batch folder>/batch.toml``).

The saved file is self-contained and loadable: the ``[batch]`` table with
every key (the root seed included, also when it was drawn), the sweep, the
population, the posterior draws (their values and file rows, inline: the
calibration file is named but not needed again), and the run tables of the
base config merged with the inline sections (as written, unresolved, so
presets chosen per run still apply).
"""

from __future__ import annotations

import json
import math
import re

from abm.batch.config import BatchConfig

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def value(v) -> str:
    """One TOML value (inline tables for dicts)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {value(x)}" for k, x in v.items()
                               if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def tables(data: dict, prefix: str = "") -> list[str]:
    """Nested dict -> TOML lines (scalars under ``[prefix]``, sub-dicts as sub-tables)."""
    lines: list[str] = []
    scalars = [(k, v) for k, v in data.items() if not isinstance(v, dict) and v is not None]
    subs = [(k, v) for k, v in data.items() if isinstance(v, dict)]
    if scalars and prefix:
        lines.append(f"[{prefix}]")
    for k, v in scalars:
        lines.append(f"{_key(k)} = {value(v)}")
    if scalars:
        lines.append("")
    for k, v in subs:
        lines += tables(v, f"{prefix}.{_key(k)}" if prefix else _key(k))
    return lines


def batch_toml(batch: BatchConfig, header: str = "") -> str:
    """The resolved batch as TOML text (loadable by :func:`abm.batch.load_batch`)."""
    p = batch.params
    lines = [f"# {line}" for line in header.splitlines()] + ([""] if header else [])
    lines.append("[batch]")
    for k, v in (("name", p.name), ("root_seed", batch.root_seed), ("replicates", p.replicates),
                 ("common_seeds", p.common_seeds), ("description", p.description)):
        lines.append(f"{k} = {value(v)}")
    lines.append("")
    if batch.sweep:
        s = batch.sweep
        lines += ["[batch.sweep]", f"method = {value(s.method)}"]
        if s.samples is not None:
            lines.append(f"samples = {s.samples}")
        for sp in s.params:
            if s.method == "lhs" and sp.values is None:
                v = {"low": sp.low, "high": sp.high, "scale": sp.scale}
            elif s.method == "lhs":
                v = {"values": list(sp.values)}
            else:
                v = list(sp.values)
            lines.append(f"{json.dumps(sp.path)} = {value(v)}")
        lines.append("")
    if batch.population:
        pop = batch.population
        lines += ["[batch.population]", f"size = {pop.size}"]
        for c in pop.covariates:
            args = {"dist": c.dist}
            for k, x in c.args.items():
                if x is not None:
                    args[k] = list(x) if isinstance(x, tuple) else x
            lines.append(f"{json.dumps(c.path)} = {value(args)}")
        lines.append("")
    if batch.posterior:
        post = batch.posterior
        lines.append("[batch.posterior]")
        if post.file:
            lines.append(f"file = {value(post.file)}")
        lines += [f"select = {value(post.select)}", f"draws = {post.n_draws}",
                  f"rows = {value(list(post.rows))}", "", "[batch.posterior.samples]"]
        for j, path in enumerate(post.parameters):
            lines.append(f"{json.dumps(path)} = {value([v[j] for v in post.values])}")
        lines.append("")
    lines += tables(batch.base_data)
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["batch_toml", "value", "tables"]
