"""Serialization A/B: today's ``serialize_event`` vs a baseline revision's, events/s per core.

The baseline's ``fm4npp/data`` serialization modules (``knn``, ``serialize`` and, where the revision
has them, ``knn_numba`` and ``serialize_numba``) are read from git (``--baseline``, default the
revision before issue 13) and loaded as stand-alone modules, so both run on the same events in the
same process. Events: particle-gun events with ≈ 800 hits (TPCpp-10M ≈ 834–856, SPEC §2.2). Timing
is process CPU time; rounds alternate between the two and the best round of each counts (load from
other processes biases both alike); the load average is printed before and after. The outputs are
compared field by field first.

Usage: ``python benchmarks/bench_serialize.py [--events 60] [--repeat 5] [--k 8 30] [--baseline REV]``
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from fm4npp.data.fastsim import SimConfig
from fm4npp.data.generate import simulate_events
from fm4npp.data.gun import GunConfig
from fm4npp.data.schema import Event
from fm4npp.data.serialize import VoxelEdges, fit_edges, serialize_event

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "83c7c48"  # main before issue 13


MODULES = ("knn_numba", "knn", "serialize_numba", "serialize")  # in import order


def _rebase_imports(line: str, names: Iterable[str]) -> str:
    """Point an import of one of ``names`` (fm4npp.data modules) at its ``_baseline_`` copy."""
    names = set(names)
    m = re.match(r"(\s*)from fm4npp\.data\.(\w+) import (.*)", line)
    if m and m.group(2) in names:
        return f"{m.group(1)}from _baseline_{m.group(2)} import {m.group(3)}"
    m = re.match(r"(\s*)from fm4npp\.data import (.*)", line)
    if m and {n.strip() for n in m.group(2).split(",")} <= names:
        mods = [n.strip() for n in m.group(2).split(",")]
        return m.group(1) + "import " + ", ".join(f"_baseline_{n} as {n}" for n in mods)
    return line


def load_baseline(rev: str) -> types.ModuleType:
    """The baseline revision's serialize module (with its own kNN modules), loaded from git."""
    sources = {}
    for name in MODULES:
        got = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:fm4npp/data/{name}.py"],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
        if got.returncode == 0:
            sources[name] = got.stdout
    mods = {}
    for name, src in sources.items():
        src = "\n".join(_rebase_imports(line, sources) for line in src.splitlines())
        mod = types.ModuleType(f"_baseline_{name}")
        mod.__file__ = f"<{rev}:{name}.py>"
        sys.modules[mod.__name__] = mod
        exec(compile(src.replace("cache=True", "cache=False"), mod.__file__, "exec"), mod.__dict__)  # noqa: S102
        mods[name] = mod
    return mods["serialize"]


def gun_events(n: int, seed: int = 1) -> list[Event]:
    """Gun events of ≈ 840 hits on average (11–18 tracks: 836 hits with today's fast simulation;
    10–16 tracks, used before 2026-12-01, gave 765)."""
    return simulate_events(n, seed, gun=GunConfig(multiplicity=(11, 18)), sim=SimConfig())


def best_rate(fns: Sequence[Callable[[Event], object]], events: list[Event], repeat: int) -> list[float]:
    best = [np.inf] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.process_time()
            for ev in events:
                fn(ev)
            best[i] = min(best[i], time.process_time() - t)
    return [len(events) / b for b in best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--k", type=int, nargs="+", default=[8, 30])
    parser.add_argument("--baseline", default=BASELINE)
    args = parser.parse_args()
    base = load_baseline(args.baseline)
    events = gun_events(args.events)
    hits = np.mean([e.n_hits for e in events])
    print(f"{len(events)} gun events, {hits:.0f} hits/event; baseline {args.baseline}; process CPU time")
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"{'k':>3} {'mode':>6} {'baseline ev/s':>14} {'now ev/s':>9} {'speed-up':>9}")
    for k in args.k:
        for mode in ("fixed", "compat"):
            e = fit_edges(events, mode=mode)
            be = base.VoxelEdges(**{f: getattr(e, f) for f in VoxelEdges.__dataclass_fields__})
            fns = [
                partial(base.serialize_event, edges=be, mode=mode, k=k),
                partial(serialize_event, edges=e, mode=mode, k=k),
            ]
            for ev in events[:3]:  # compile, warm up and check identical outputs
                a, b = (fn(ev) for fn in fns)
                for f in ("feats", "perm", "targets", "target_mask", "nbr", "track_id", "pid", "noise"):
                    if not np.array_equal(getattr(a, f), getattr(b, f)):
                        raise SystemExit(f"outputs differ in '{f}' (k={k}, {mode})")
            rb, rn = best_rate(fns, events, args.repeat)
            print(f"{k:>3} {mode:>6} {rb:>14.0f} {rn:>9.0f} {rn / rb:>8.2f}×")
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
