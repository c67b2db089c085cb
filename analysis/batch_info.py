"""What a batch was: description, seed and design from its ``batch.toml``."""

from __future__ import annotations

import tomllib


def batch_info(ds) -> dict:
    """``description, root_seed, replicates, population, sweep, posterior`` of a batch
    (text; empty when its config is absent or unreadable)."""
    info = {"description": "", "root_seed": "", "population": "", "sweep": "", "posterior": ""}
    text = ds.attrs.get("batch_config", "")
    if text:
        try:
            cfg = tomllib.loads(text)
            b = cfg.get("batch", {})
            info["description"] = b.get("description", "")
            info["root_seed"] = b.get("root_seed", "")
            info["replicates"] = b.get("replicates", "")
            if "population" in b:
                info["population"] = f"{b['population'].get('size', '?')} virtual patients"
            if "sweep" in b:
                info["sweep"] = f"sweep ({b['sweep'].get('method', 'grid')})"
            if "posterior" in b:
                post = b["posterior"]
                n = post.get("draws", len(post.get("rows", [])) or "?")
                src = str(post.get("file", "")).replace("\\", "/").rsplit("/", 1)[-1]
                info["posterior"] = (f"{n} posterior draws ({post.get('select', 'first')}"
                                     + (f" of {src}" if src else "") + ")")
        except tomllib.TOMLDecodeError:
            pass
    return info


__all__ = ["batch_info"]
