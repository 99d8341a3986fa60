"""Dataset generation: PYTHIA 8 (or the particle gun) + fast TPC simulation → a Parquet shard set.

Determinism: events are made in fixed blocks of :data:`BLOCK_EVENTS`; block b of a dataset with seed s
re-seeds PYTHIA with ``block_seed(s, b)`` and numpy with ``SeedSequence((s, b))``, so the output
depends only on (seed, n_events, configuration), never on the number of workers. Workers make blocks;
the parent writes them, in order, into shards of ``events_per_shard`` events inside a staging
directory that is renamed into place only when everything succeeded.

Event content (PYTHIA only; the gun stays bare): PYTHIA's inelastic events that pass the MBD-like
minimum-bias trigger (``SimConfig.trigger``, see :mod:`fm4npp.data.pythia`; rejected before any
simulation), their charged particles and weak-decay daughters (origin 1), noise curlers (origin 4),
then photon conversions (origin 2) and π±/K± decays in flight (origin 3), see
:mod:`fm4npp.data.fastsim.secondaries`. The phenomenological material secondaries (origin 5) are a
calibration knob, off by default (``SimConfig.secondary_per_charged``). Calibration (noise fraction
23–25 % first, SPEC §3; then TPCpp-10M's ≈ 840 points per event) is recorded in
:class:`fm4npp.data.fastsim.SimConfig`'s defaults and in the shard set's metadata;
``fm4npp-sweep data stats`` prints the comparison (:mod:`fm4npp.data.validation`).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fm4npp.data.fastsim import SimConfig, simulate_particles
from fm4npp.data.fastsim.noise import curler_particles, material_secondaries
from fm4npp.data.fastsim.secondaries import add_secondaries
from fm4npp.data.gun import GunConfig, gun_particles
from fm4npp.data.pythia import PythiaDriver, block_seed
from fm4npp.data.schema import (
    HIT_COLUMNS,
    ORIGIN_SECONDARY,
    PARTICLE_COLUMNS,
    SCHEMA_VERSION,
    Event,
)
from fm4npp.data.shards import ShardInfo, ShardSet, commit_dir, finalize, staging_dir, write_shard
from fm4npp.errors import ConfigError

BLOCK_EVENTS = 100  # events per seeding block: the unit of work and of determinism
EVENTS_PER_SHARD = 1000  # default shard size (a multiple of BLOCK_EVENTS)
SECONDARY_MAX_COT = 2.13  # the material secondaries scale with the charged particles at |η| < 1.5

Tables = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]

# One initialised PYTHIA per process, with the (dataset seed, tune) it was made for: PYTHIA's
# initialisation samples with the random engine (MPI and diffraction tables), so the event stream of a
# block depends on the initialisation seed too, and another dataset seed or tune needs a new driver.
_DRIVER: tuple[tuple[int, str], PythiaDriver] | None = None


def _driver(seed: int, tune: str) -> PythiaDriver:
    global _DRIVER
    if _DRIVER is None or _DRIVER[0] != (seed, tune):
        _DRIVER = ((seed, tune), PythiaDriver(seed, tune))
    return _DRIVER[1]


def simulate_block(
    seed: int,
    block: int,
    n_events: int,
    sim: SimConfig,
    gun: GunConfig | None = None,
    tune: str = "default",
) -> Tables:
    """Hits and particles tables (with an ``event`` column = event id) of events
    ``block·BLOCK_EVENTS … + n_events − 1``. Pure function of its arguments."""
    first = block * BLOCK_EVENTS
    rng = np.random.default_rng(np.random.SeedSequence((seed, block)))
    if gun is not None:
        table = gun_particles(n_events, gun, rng, first)
        table["max_turns"] = np.where(table["max_turns"] > 0, table["max_turns"], sim.max_turns)
    else:
        table = _driver(seed, tune).generate(
            n_events, block_seed(seed, block), rng, first, trigger=sim.trigger
        )
        table = event_particles(table, n_events, first, sim, rng)
    return simulate_particles(table, sim, rng)


def event_particles(
    pythia: dict[str, np.ndarray],
    n_events: int,
    first_event: int,
    sim: SimConfig,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The particle table to transport: PYTHIA's particles (photons included), noise curlers, the
    phenomenological secondaries (if the knob is on), conversions and decays in flight (SPEC §3.6,
    §3.9), ``max_turns`` filled from ``sim``."""
    curlers = curler_particles(
        rng.poisson(sim.curler_mean, size=n_events), first_event, rng,
        sim.curler_max_turns, sim.curler_path_cm,
    )  # fmt: skip
    charged = (pythia["charge"] != 0) & (
        np.abs(pythia["pz"]) < SECONDARY_MAX_COT * np.hypot(pythia["px"], pythia["py"])
    )
    n_charged = np.bincount(pythia["event"][charged] - first_event, minlength=n_events)[:n_events]
    extra = material_secondaries(
        rng.poisson(sim.secondary_per_charged * n_charged), first_event, rng, sim.secondary_pt_range_gev,
        sim.secondary_r_range_cm, sim.secondary_eta_max, ORIGIN_SECONDARY,
    )  # fmt: skip
    table = {k: np.concatenate([pythia[k], curlers[k], extra[k]]) for k in pythia}
    return add_secondaries(table, rng, sim.max_turns, sim.conversions, sim.decays_in_flight)


def tables_to_events(
    hits: dict[str, np.ndarray], particles: dict[str, np.ndarray], event_ids: np.ndarray
) -> list[Event]:
    """Split flat tables (sorted by ``event``) into Event objects, one per id of ``event_ids``."""
    h_order = np.argsort(hits["event"], kind="stable")
    p_order = np.argsort(particles["event"], kind="stable")
    h_ev, p_ev = hits["event"][h_order], particles["event"][p_order]
    events = []
    for i in np.asarray(event_ids):
        a, b = np.searchsorted(h_ev, [i, i + 1])
        c, d = np.searchsorted(p_ev, [i, i + 1])
        events.append(
            Event(
                event_id=int(i),
                hits={n: hits[n][h_order[a:b]] for n in HIT_COLUMNS},
                particles={n: particles[n][p_order[c:d]] for n in PARTICLE_COLUMNS},
            )
        )
    return events


def simulate_events(
    n_events: int,
    seed: int,
    gun: GunConfig | None = None,
    sim: SimConfig | None = None,
    tune: str = "default",
) -> list[Event]:
    """In-memory events 0 … n_events − 1 (identical to those :func:`generate_dataset` writes)."""
    sim = sim or SimConfig()
    out: list[Event] = []
    for block, n in _blocks(n_events):
        hits, parts = simulate_block(seed, block, n, sim, gun, tune)
        out.extend(tables_to_events(hits, parts, np.arange(n) + block * BLOCK_EVENTS))
    return out


def _blocks(n_events: int) -> list[tuple[int, int]]:
    return [
        (b, min(BLOCK_EVENTS, n_events - b * BLOCK_EVENTS))
        for b in range((n_events + BLOCK_EVENTS - 1) // BLOCK_EVENTS)
    ]


def _work(args: tuple[int, int, int, SimConfig, GunConfig | None, str]) -> tuple[int, int, Tables]:
    seed, block, n, sim, gun, tune = args
    return block, n, simulate_block(seed, block, n, sim, gun, tune)


def _results(
    tasks: list[tuple[int, int, int, SimConfig, GunConfig | None, str]], workers: int
) -> Iterator[tuple[int, int, Tables]]:
    if workers == 1:
        yield from map(_work, tasks)
        return
    # spawn: safe even when the caller has imported torch or started threads
    with mp.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_work, tasks, chunksize=1)


def generate_dataset(
    out_dir: str | Path,
    n_events: int,
    seed: int,
    workers: int = 1,
    gun: GunConfig | None = None,
    progress: bool = True,
    sim: SimConfig | None = None,
    tune: str = "default",
    events_per_shard: int = EVENTS_PER_SHARD,
) -> ShardSet:
    """Generate ``n_events`` events into the new directory ``out_dir`` and return its ShardSet."""
    if n_events < 1:
        raise ConfigError(f"--events {n_events}: must be >= 1")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be >= 1")
    if not 0 <= seed < 2**31:
        raise ConfigError(f"--seed {seed}: must be in [0, 2**31)")
    if events_per_shard < BLOCK_EVENTS or events_per_shard % BLOCK_EVENTS:
        raise ConfigError(f"events_per_shard {events_per_shard}: must be a multiple of {BLOCK_EVENTS}")
    sim = sim or SimConfig()
    out_dir = Path(out_dir)
    stage = staging_dir(out_dir)
    tasks = [(seed, b, n, sim, gun, tune) for b, n in _blocks(n_events)]
    blocks_per_shard = events_per_shard // BLOCK_EVENTS
    try:
        from tqdm import tqdm

        bar = tqdm(total=n_events, unit="ev", disable=not progress, desc="generate")
        shards: list[ShardInfo] = []
        pending: list[tuple[int, int, Tables]] = []
        for result in _results(tasks, workers):
            pending.append(result)
            bar.update(result[1])
            if len(pending) == blocks_per_shard or result[0] == tasks[-1][1]:
                shards.append(_write_pending(stage, len(shards), pending))
                pending = []
        bar.close()
        finalize(stage, shards, _metadata(n_events, seed, sim, gun, tune))
        commit_dir(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return ShardSet(out_dir)


def _write_pending(stage: Path, index: int, pending: list[tuple[int, int, Tables]]) -> ShardInfo:
    hits = {k: np.concatenate([t[2][0][k] for t in pending]) for k in pending[0][2][0]}
    parts = {k: np.concatenate([t[2][1][k] for t in pending]) for k in pending[0][2][1]}
    ids = np.concatenate([np.arange(n) + b * BLOCK_EVENTS for b, n, _ in pending])
    return write_shard(stage, index, hits, parts, ids)


def _metadata(
    n_events: int, seed: int, sim: SimConfig, gun: GunConfig | None, tune: str
) -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "source": "gun" if gun is not None else "pythia8+fastsim",
        "n_events": n_events,
        "seed": seed,
        "tune": tune,
        "sim": dataclasses.asdict(sim),
        "gun": dataclasses.asdict(gun) if gun is not None else None,
        "block_events": BLOCK_EVENTS,
        "schema_version": SCHEMA_VERSION,
        "pythia8mc": version("pythia8mc"),
    }
