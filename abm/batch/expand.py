"""Expand a batch into runs: one :class:`RunSpec` per (replicate, sweep point, draw, patient).

Run order and ids::

    index = ((replicate * n_points + sweep_point) * n_draws + draw) * n_members + member
    run_id = f"{batch.name}_{index:05d}"        (more digits when needed)

``draw`` is the posterior draw of ``[batch.posterior]`` (``n_draws = 1``
without one, which leaves the indices of such batches as they were). Every
draw gets the same virtual patients: a member's covariates depend on the root
seed and the member index only.

Replicates are the outermost loop, so growing ``replicates`` keeps every
existing run (same index, id and seed): ``abm batch CONFIG --resume`` then
runs only the new ones.

Seeds: ``seed = run_seed(root_seed, index)`` -- ``np.random.SeedSequence([root,
index])`` -> 63 bits. With ``common_seeds = true`` the sweep point and the
draw are left out (``index' = replicate * n_members + member``), so every
sweep point and posterior draw sees the same virtual patients with the same
random numbers (a paired design).

A spec's ``config`` holds the run tables (base + sweep values + covariates,
with ``run.name = run_id``, ``run.seed``, ``run.replicate`` set): any run can
be re-created alone and gives the same file as in its batch::

    spec = expand_batch(load_batch("configs/batch_example.toml"))[k]
    run_to_file(spec.resolve(), path="alone.h5")
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from abm.batch.config import BatchConfig, set_path
from abm.batch.sampling import population_members, sweep_points
from abm.config import Config, config_from_dict
from abm.errors import ConfigError


def run_seed(root_seed: int, index: int) -> int:
    """The seed of run ``index``: ``SeedSequence([root_seed, index])`` -> 63 bits."""
    state = np.random.SeedSequence([int(root_seed), int(index)]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def config_hash(config: dict) -> str:
    """A short hash of a run's config tables (to notice a changed batch on resume)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class RunSpec:
    """One run of a batch.

    Attributes:
        index: run index in the batch (0-based).
        run_id: ``<batch>_<index>``; the file is ``<run_id>.h5``.
        sweep_point, member, replicate: its coordinates in the batch.
        draw: its posterior draw (None when the batch has no ``[batch.posterior]``).
        seed: run seed.
        params: values of the varied parameters (sweep and covariates) by path.
        config: the run's config tables (validate with :meth:`resolve`).
        error: why the config is invalid (one line), if it was validated and is.
    """

    index: int
    run_id: str
    sweep_point: int
    member: int
    replicate: int
    seed: int
    params: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    error: str | None = None
    source: str | None = None
    draw: int | None = None

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    def resolve(self) -> Config:
        """The validated run config (raises ConfigError for a bad draw)."""
        where = f"{self.source} (run {self.run_id})" if self.source else f"run {self.run_id}"
        return config_from_dict(self.config, file=where)

    def validate(self) -> str | None:
        """None if the config is valid, else the one-line ConfigError text."""
        try:
            self.resolve()
        except ConfigError as exc:
            return f"ConfigError: {exc}"
        return None

    def file(self, folder) -> Path:
        return Path(folder) / f"{self.run_id}.h5"

    def task(self, folder, *, resume: bool = False, threads: int | None = None) -> dict:
        """The picklable work item a worker runs (see :func:`abm.batch.worker.execute`)."""
        return {"index": self.index, "run_id": self.run_id, "seed": self.seed,
                "config": self.config, "path": str(self.file(folder)), "resume": bool(resume),
                "threads": threads}


def _id_width(n_runs: int) -> int:
    return max(5, len(str(max(0, n_runs - 1))))


class RunCoords(NamedTuple):
    """Where a run sits in its batch (``draw`` is 0 without posterior draws)."""

    sweep_point: int
    member: int
    replicate: int
    draw: int = 0


def run_coords(batch: BatchConfig, index: int) -> RunCoords:
    """``(sweep_point, member, replicate, draw)`` of run ``index``."""
    m = batch.n_members
    d = batch.n_draws
    p = batch.n_points
    return RunCoords(sweep_point=(index // (m * d)) % p, member=index % m,
                     replicate=index // (m * d * p), draw=(index // m) % d)


def expand_batch(batch: BatchConfig, indices=None, *, validate: bool = True) -> list[RunSpec]:
    """The runs of ``batch`` in index order (all, or only ``indices``).

    Args:
        batch: a loaded batch.
        indices: run indices to build (default: every run).
        validate: check each run's config and put the message in ``spec.error``.
    """
    n = batch.n_runs
    wanted = range(n) if indices is None else sorted(set(int(i) for i in indices))
    for i in wanted:
        if not 0 <= i < n:
            raise ConfigError(f"run index {i} is out of range: the batch has {n} runs "
                              f"(0 to {n - 1})", path=batch.file)
    coords = {i: run_coords(batch, i) for i in wanted}
    points = sweep_points(batch)
    members = population_members(batch, {c[1] for c in coords.values()})
    width = _id_width(n)
    specs = []
    post = batch.posterior
    for i in wanted:
        s, m, r, d = coords[i]
        params = {**points[s], **(post.draw(d) if post else {}), **members[m]}
        seed_index = r * batch.n_members + m if batch.params.common_seeds else i
        seed = run_seed(batch.root_seed, seed_index)
        run_id = f"{batch.name}_{i:0{width}d}"
        data = copy.deepcopy(batch.base_data)
        for path, value in params.items():
            set_path(data, path, copy.deepcopy(value))
        set_path(data, "run.name", run_id)
        set_path(data, "run.seed", seed)
        set_path(data, "run.replicate", r)
        spec = RunSpec(index=i, run_id=run_id, sweep_point=s, member=m, replicate=r, seed=seed,
                       params=params, config=data, source=batch.file,
                       draw=d if post else None)
        if validate:
            object.__setattr__(spec, "error", spec.validate())
        specs.append(spec)
    return specs


__all__ = ["RunSpec", "RunCoords", "expand_batch", "run_seed", "run_coords", "config_hash"]
