"""CLI commands: ``submit``, ``status``, ``cancel``, ``logs``.

``submit`` imports submitit (through fm4npp.sweep.submit) inside its handler only; ``status``, ``cancel``
and ``logs`` never import torch or submitit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fm4npp.cli.args import add_overrides, add_study


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
    add_study(st)
    st.add_argument("--json", action="store_true", help="print JSON rows")
    st.set_defaults(func=_status)

    ca = sub.add_parser("cancel", help="cancel a study's pending and running jobs")
    add_study(ca)
    ca.add_argument(
        "--cells", nargs="+", metavar="CELL", help="only these cells (ids or unique prefixes)"
    )
    ca.set_defaults(func=_cancel)

    lg = sub.add_parser("logs", help="print the logs of a cell's latest job")
    add_study(lg)
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
    from fm4npp.cli.render import LiveStatus

    live = LiveStatus() if args.wait is not False else None
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


def _status(args: argparse.Namespace) -> int:
    from fm4npp.sweep.status import study_status

    statuses = study_status(args.study_dir)
    if args.json:
        print(json.dumps([s.row() for s in statuses], indent=1))
        return 0
    from fm4npp.cli.render import console, status_table, status_title

    console().print(status_table(statuses, status_title(str(args.study_dir), statuses)))
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
