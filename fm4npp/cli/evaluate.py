"""CLI commands: ``score-tracks`` (score a track-finding submission from tables) and ``evaluate``
(downstream evaluation of a trained cell, or of the study's baselines)."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from fm4npp.cli.args import add_study, study_dir


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the top-level parser."""
    _register_score_tracks(sub)
    _register_evaluate(sub)


# ---------------------------------------------------------------------------------------------------
# score-tracks


def _register_score_tracks(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "score-tracks",
        help="score track candidates against truth (ARI, efficiency, purity, TrackML score)",
        description=(
            "Score a track-finding submission. HITS: event_id, hit_id, particle_id (0 = noise), optional "
            "weight; TRACKS: event_id, hit_id, track_id (-1 = unassigned); PARTICLES: event_id, "
            "particle_id, pt, eta. CSV or Parquet. Matching: strict double majority (> 50%% both ways)."
        ),
    )
    p.add_argument("--hits", required=True, metavar="HITS", help="truth hits table (.csv or .parquet)")
    p.add_argument("--tracks", required=True, metavar="TRACKS", help="hit → track assignment table")
    p.add_argument("--particles", metavar="PARTICLES", help="particle table (enables pT/η metrics)")
    p.add_argument(
        "--min-hits",
        type=int,
        default=5,
        help="hits a truth particle needs to count for efficiency (default 5)",
    )
    p.add_argument(
        "--min-track-hits",
        type=int,
        default=3,
        help="hits a candidate track needs for purity, fake and duplicate rates (default 3)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(func=_score_tracks)


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN: undefined metrics become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def _score_tracks(args: argparse.Namespace) -> int:
    from fm4npp.eval.scoring import score_tracks  # pandas/sklearn load only when run

    metrics = score_tracks(
        args.hits,
        args.tracks,
        args.particles,
        min_hits=args.min_hits,
        min_track_hits=args.min_track_hits,
    )
    if args.json:
        print(json.dumps({k: _finite_or_none(v) for k, v in metrics.items()}, allow_nan=False))
        return 0
    from fm4npp.cli.render import console, score_table

    console().print(score_table(metrics))
    return 0


# ---------------------------------------------------------------------------------------------------
# evaluate


def _register_evaluate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``evaluate``: downstream adapters of one trained cell, or the study's baselines (SPEC §8–10)."""
    p = sub.add_parser(
        "evaluate",
        help="train and test the downstream adapters of a cell (or the study baselines)",
        description=(
            "Frozen-backbone evaluation: tracking, PID and noise adapters trained per labelled-set size "
            "and adapter seed, selected on the validation split, tested once on the test split. Writes "
            "runs/CELL/eval/downstream.parquet, or baselines/eval/*.parquet with --baselines "
            "(adapter-only per model size, random embedding, Hough)."
        ),
    )
    add_study(p, deprecated_flag=True)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--cell", metavar="CELL_ID", help="evaluate this trained cell")
    which.add_argument("--baselines", action="store_true", help="evaluate the study's baselines")
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    import logging

    study = study_dir(args, "evaluate")
    from fm4npp.cli.render import key_values
    from fm4npp.train.downstream import evaluate_study_baselines, evaluate_study_cell

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.baselines:
        names = evaluate_study_baselines(study)
        print(f"baselines written to {study / 'baselines' / 'eval'}: {', '.join(names)}")
        return 0
    print(key_values(evaluate_study_cell(study, args.cell), width=24, float_format=".4f"))
    return 0
