"""CLI command: ``train`` — pretrain one cell in the foreground (resumes from its last checkpoint).

    fm4npp-sweep train --config runs/<cell>/config.yaml        # a resolved RunConfig
    fm4npp-sweep train results/<study> --cell <cell>           # the config ``submit`` wrote

SIGTERM and SIGUSR2 (SLURM's pre-time-limit signal) ask the loop to checkpoint at the next step
boundary and exit with status 75 (EX_TEMPFAIL: run the same command again to resume). A cell trained
here ends with its run record (``summary.json``, ``evaluated: false``): downstream evaluation is
``fm4npp-sweep evaluate``'s.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from fm4npp.cli.args import add_study, optional_study_dir

EXIT_RESUMABLE = 75  # sysexits.h EX_TEMPFAIL: stopped cleanly, run again to resume


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the top-level parser."""
    p = sub.add_parser(
        "train",
        help="pretrain one cell here (resumes from checkpoints/last.pt)",
        description="Pretrain one cell in this process and print the path of its summary.json.",
    )
    add_study(p, deprecated_flag=True)
    p.add_argument(
        "--config", metavar="RUN_CONFIG_YAML", help="a resolved run config (instead of STUDY_DIR)"
    )
    p.add_argument("--cell", metavar="CELL_ID", help="cell id (with STUDY_DIR)")
    p.add_argument(
        "--run-dir",
        metavar="DIR",
        help="run directory (default: the config file's directory, or STUDY_DIR/runs/CELL_ID)",
    )
    p.add_argument(
        "--max-steps", type=int, metavar="N", help="cap the run at N optimiser steps (smoke tests)"
    )
    p.add_argument(
        "--device", choices=("cpu", "cuda"), help="force the CPU or CUDA (default: CUDA when available)"
    )
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from fm4npp.errors import ConfigError

    study = optional_study_dir(args, "train")
    if (study is None) == (args.config is None):
        raise ConfigError("train: give either STUDY_DIR --cell CELL_ID or --config RUN_CONFIG_YAML")
    if study is not None:
        if not args.cell:
            raise ConfigError("train: STUDY_DIR needs --cell CELL_ID")
        config = study / "runs" / args.cell / "config.yaml"
    else:
        if args.cell:
            raise ConfigError("train: --cell goes with STUDY_DIR, not with --config")
        config = Path(args.config)
    if args.max_steps is not None and args.max_steps <= 0:
        raise ConfigError(f"train: --max-steps must be > 0, got {args.max_steps}")
    run_dir = Path(args.run_dir) if args.run_dir else config.parent

    import time

    from fm4npp.errors import Interrupted
    from fm4npp.store.record import RunRecord
    from fm4npp.store.rundir import RunDir
    from fm4npp.train.pretrain import read_run_config
    from fm4npp.train.wsd import pretrain_cell  # a cosine cell, or a WSD branch (with its trunk)

    stop = {"requested": False}

    def request_stop(signum: int, frame: object) -> None:
        stop["requested"] = True

    for sig in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(sig, request_stop)
    cfg = read_run_config(config)
    started = time.monotonic()
    try:
        result = pretrain_cell(
            cfg, run_dir, should_stop=lambda: stop["requested"], max_steps=args.max_steps
        )
    except Interrupted as stopped:
        print(f"fm4npp-sweep: {stopped}")
        return EXIT_RESUMABLE
    rd = RunDir(run_dir)
    rd.write_record(RunRecord.final(cfg, result, "done", None, wall_time_s=time.monotonic() - started))
    print(rd.summary_file)
    return 0
