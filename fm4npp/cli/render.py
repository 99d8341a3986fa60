"""Terminal rendering shared by the commands: number formatting and rich tables."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table


def si(x: float, digits: int = 3) -> str:
    """1.23M, 4.5e+16 style: SI prefixes up to T, scientific above."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    ax = abs(x)
    for value, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if ax >= value:
            if ax >= 1e15:
                return f"{x:.{digits - 1}e}"
            return f"{x / value:.{digits}g}{suffix}"
    return f"{x:.{digits}g}"


def hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.0f} s"
    if h < 1:
        return f"{h * 60:.1f} min"
    return f"{h:.1f} h"


def table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    footer: Sequence[str] | None = None,
) -> Table:
    t = Table(title=title, show_footer=footer is not None, header_style="bold")
    for i, col in enumerate(columns):
        t.add_column(col, footer=footer[i] if footer else "", justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    return t


def console() -> Console:
    return Console(width=160)


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
