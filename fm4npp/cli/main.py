"""``fm4npp-sweep`` entry point: builds the argument parser from the per-concern command modules.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``, which adds its subcommands
with ``set_defaults(func=handler)``. Command modules import nothing heavy at module level (no torch,
no submitit, no matplotlib): ``plan`` and ``status`` must start in well under a second.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fm4npp import __version__
from fm4npp.errors import FM4NPPError

COMMAND_MODULES = (
    "plan",
    "data",
    "train",
    "submit",
    "analysis",
    "evaluate",
    "quickstart",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fm4npp-sweep",
        description="Plan, run, fit and report neural-scaling studies of the FM4NPP foundation model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"fm4npp.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except FM4NPPError as err:
        print(f"fm4npp-sweep: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("fm4npp-sweep: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
