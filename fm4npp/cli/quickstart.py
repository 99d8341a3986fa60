"""``fm4npp-sweep quickstart``: the whole quickstart study on this machine, end to end."""

from __future__ import annotations

import argparse
from pathlib import Path

from fm4npp.cli.args import add_overrides


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the top-level parser."""
    p = sub.add_parser(
        "quickstart",
        help="run the quickstart study end to end on CPU: events, plan, train, evaluate, fit, report",
    )
    p.add_argument(
        "--sweep", type=Path, default=None, help="sweep file (default: sweeps/quickstart.yaml)"
    )
    add_overrides(p)
    p.add_argument("--max-parallel", type=int, default=None, help="cells at once (default: cores)")
    p.add_argument(
        "--bootstrap", type=int, default=300, metavar="N", help="bootstrap resamples of the fits"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fm4npp.cli.render import LiveStatus
    from fm4npp.workflow.quickstart import DEFAULT_SWEEP, run_quickstart

    live = LiveStatus()
    try:
        result = run_quickstart(
            args.sweep or DEFAULT_SWEEP,
            overrides=args.overrides,
            max_parallel=args.max_parallel,
            n_boot=args.bootstrap,
            on_update=live.update,
        )
    except KeyboardInterrupt:
        live.stop()
        print(
            "interrupted: the running cells stop with it; run the same command again to resume them "
            "from their checkpoints (finished cells are kept)"
        )
        return 130
    finally:
        live.stop()
    total = sum(result.timings_s.values())
    print(
        "timings: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in result.timings_s.items())
        + f" (total {total:.0f} s)"
    )
    print(f"report: {result.report}")
    return 1 if result.n_failed else 0
