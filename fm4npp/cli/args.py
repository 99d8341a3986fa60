"""Arguments shared by several subcommands, spelled once.

The study directory is the first positional argument of every subcommand that reads a study
(``status STUDY_DIR``, ``evaluate STUDY_DIR --cell C``, ``train STUDY_DIR --cell C``, …). ``--study
STUDY_DIR`` is still accepted where it was the spelling (``evaluate``, ``train``), hidden from the help
and with a deprecation note on stderr; it goes away in the next release.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fm4npp.errors import ConfigError


def add_overrides(p: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): override a sweep key; precedence above the file."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a sweep key, e.g. --set train.epochs=2 (repeatable)",
    )


def add_study(
    p: argparse.ArgumentParser, *, optional: bool = False, deprecated_flag: bool = False
) -> None:
    """The positional STUDY_DIR (``nargs='?'`` when ``optional``); ``deprecated_flag`` also accepts
    the old ``--study STUDY_DIR`` (hidden)."""
    p.add_argument(
        "study_dir",
        type=Path,
        nargs="?" if optional or deprecated_flag else None,
        metavar="STUDY_DIR",
        help="study directory (results/<study>)",
    )
    if deprecated_flag:
        p.add_argument("--study", dest="study_flag", type=Path, help=argparse.SUPPRESS)
    else:
        p.set_defaults(study_flag=None)


def optional_study_dir(args: argparse.Namespace, command: str) -> Path | None:
    """STUDY_DIR of a subcommand registered with :func:`add_study` (the deprecated flag folded in)."""
    flag = args.study_flag
    if flag is None:
        return args.study_dir  # type: ignore[no-any-return]
    if args.study_dir is not None:
        raise ConfigError(f"{command}: give STUDY_DIR once (positional; --study is deprecated)")
    print(f"fm4npp-sweep: {command} --study is deprecated; pass STUDY_DIR first", file=sys.stderr)
    return Path(flag)


def study_dir(args: argparse.Namespace, command: str) -> Path:
    """:func:`optional_study_dir`, required."""
    study = optional_study_dir(args, command)
    if study is None:
        raise ConfigError(f"{command}: STUDY_DIR is required (e.g. results/quickstart)")
    return study
