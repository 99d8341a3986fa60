"""CLI commands: ``submit``, ``status``, ``cancel``, ``logs``.

``submit`` imports submitit (through fm4npp.sweep.submit) inside its handler only; ``status``, ``cancel``
and ``logs`` never import torch or submitit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

STATE_STYLE = {
    "done": "green",
    "running": "cyan",
    "pending": "yellow",
    "preempted-requeued": "magenta",
    "failed": "red",
    "corrupt": "red",
    "planned": "dim",
}


from fm4npp.cli.render import add_overrides


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the top-level parser."""
    p = sub.add_parser("submit", help="submit a sweep's cells (local processes or SLURM job arrays)")
    p.add_argument("sweep", type=Path, help="sweep file (YAML)")
    p.add_argument(
        "--cluster", help="local, slurm, perlmutter, frontier or a profile .yaml (default: the sweep's)"
    )
    p.add_argument("--qos", help="QOS of the profile (default: the sweep's, else the profile's)")
    p.add_argument("--account", help="SLURM account (overrides the profile's)")
    add_overrides(p)
    p.add_argument(
        "--dry-run", action="store_true", help="print what would run (and each array's sbatch script)"
    )
    p.add_argument(
        "--allow-over-budget",
        action="store_true",
        help="submit even when the plan is over budget.max_node_hours (as for plan)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="resubmit failed cells (they resume from checkpoints)",
    )
    p.add_argument(
        "--max-parallel",
        type=int,
        default=None,
        metavar="K",
        help="local: cells at once (default: the profile's, else the number of cores)",
    )
    p.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="wait with a live status table (default: yes on local, no on SLURM)",
    )
    p.set_defaults(func=_submit)

    st = sub.add_parser(
        "status", help="state of every cell of a study (from artefacts and the scheduler)"
    )
    st.add_argument("study_dir", type=Path, help="results/<study>")
    st.add_argument("--json", action="store_true", help="print JSON rows")
    st.set_defaults(func=_status)

    ca = sub.add_parser("cancel", help="cancel a study's pending and running jobs")
    ca.add_argument("study_dir", type=Path, help="results/<study>")
    ca.add_argument(
        "--cells", nargs="+", metavar="CELL", help="only these cells (ids or unique prefixes)"
    )
    ca.set_defaults(func=_cancel)

    lg = sub.add_parser("logs", help="print the logs of a cell's latest job")
    lg.add_argument("study_dir", type=Path, help="results/<study>")
    lg.add_argument("cell", help="cell id (or a unique prefix)")
    lg.add_argument(
        "--tail", type=int, default=0, metavar="N", help="only the last N lines of each file"
    )
    lg.set_defaults(func=_logs)


def _submit(args: argparse.Namespace) -> int:
    from fm4npp.errors import ConfigError
    from fm4npp.sweep.plan import plan_file
    from fm4npp.sweep.submit import submit_plan

    if not args.sweep.is_file():
        raise ConfigError(f"{args.sweep}: sweep file not found")
    plan = plan_file(args.sweep, args.cluster, args.qos, args.overrides)
    live = _LiveTable() if args.wait is not False else None
    try:
        report = submit_plan(
            plan,
            dry_run=args.dry_run,
            retry_failed=args.retry_failed,
            allow_over_budget=args.allow_over_budget,
            max_parallel=args.max_parallel,
            wait=args.wait,
            account=args.account,
            on_update=live.update if live else None,
        )
    finally:
        if live:
            live.stop()
    for script in report.scripts:
        print(script)
    verb = "would submit" if report.dry_run else "submitted"
    print(
        f"{report.study_dir.name}: {verb} {len(report.submitted)} cells on {report.cluster}/{report.qos}; "
        f"skipped {len(report.skipped_done)} done, {len(report.skipped_active)} pending/running, "
        f"{len(report.skipped_failed)} failed"
        + (" (use --retry-failed)" if report.skipped_failed else "")
    )
    for cell, job in report.submitted.items():
        print(f"  {cell}  {job}")
    if report.final:
        failed = [s for s in report.final if s.state == "failed"]
        print(f"finished: {len(report.final) - len(failed)} done, {len(failed)} failed")
        return 1 if failed else 0
    return 0


class _LiveTable:
    """A rich Live view of the cells being waited on (started at the first update)."""

    def __init__(self) -> None:
        self._live: Any = None
        self._last_counts = ""

    def update(self, statuses: list[Any]) -> None:
        import sys
        from collections import Counter

        from rich.live import Live

        if not sys.stdout.isatty():  # batch logs: one plain line whenever the counts change
            counts = Counter(s.state for s in statuses)
            line = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            if line != self._last_counts:
                print(f"   cells: {line}", flush=True)
                self._last_counts = line
            return
        if self._live is None:
            self._live = Live(
                _table(statuses, "waiting for the cells"), refresh_per_second=2, transient=False
            )
            self._live.start()
        else:
            self._live.update(_table(statuses, "waiting for the cells"))

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _table(statuses: list[Any], title: str) -> Any:
    from rich.table import Table

    t = Table(title=title, header_style="bold")
    for col in ("cell", "state", "attempts", "elapsed", "last loss", "job", "reason"):
        t.add_column(col, justify="left" if col in ("cell", "state", "reason", "job") else "right")
    for s in statuses:
        style = STATE_STYLE.get(s.state, "")
        t.add_row(
            s.cell_id,
            f"[{style}]{s.state}[/]" if style else s.state,
            str(s.attempts),
            _elapsed(s.elapsed_s),
            f"{s.last_loss:.4g}" if s.last_loss is not None else "–",
            s.job_id or "–",
            s.reason,
        )
    return t


def _elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _status(args: argparse.Namespace) -> int:
    from fm4npp.sweep.status import study_status

    statuses = study_status(args.study_dir)
    if args.json:
        print(json.dumps([s.row() for s in statuses], indent=1))
        return 0
    from rich.console import Console

    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.state] = counts.get(s.state, 0) + 1
    title = f"{args.study_dir}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    Console(width=180).print(_table(statuses, title))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from fm4npp.sweep.status import cancel

    done = cancel(args.study_dir, args.cells)
    print(f"cancelled {len(done)} cells" + "".join(f"\n  {s.cell_id}  {s.job_id}" for s in done))
    return 0


def _logs(args: argparse.Namespace) -> int:
    from fm4npp.sweep.status import logs

    for path in logs(args.study_dir, args.cell):
        lines = path.read_text(errors="replace").splitlines()
        if args.tail:
            lines = lines[-args.tail :]
        print(f"==> {path} <==")
        print("\n".join(lines))
    return 0
