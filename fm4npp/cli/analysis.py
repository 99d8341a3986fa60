"""CLI commands: ``fit-laws`` (fit scaling laws to a study or a file) and ``report`` (the HTML report)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from analysis.choices import D_UNITS, GROUP_BY, LOSSES, METHODS, SCHEMES
from fm4npp.cli.args import add_study, optional_study_dir, study_dir
from fm4npp.errors import FitError, allowed_list, did_you_mean

FORM_CHOICES = ("chinchilla", "kaplan-n", "kaplan-d", "frontier", "all")
SCHEME_HELP = "auto: wild cluster bootstrap below 15 cells, else resample cells (seeds move with them)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the top-level parser."""
    p = sub.add_parser(
        "fit-laws", help="fit scaling laws to a study's finished cells or to a points file"
    )
    add_study(p, optional=True)
    p.add_argument(
        "--input",
        type=Path,
        help="CSV/Parquet with n_params, n_tokens|n_events, loss [flops, seed, group]",
    )
    p.add_argument("--form", choices=FORM_CHOICES, default="chinchilla")
    p.add_argument("--method", choices=METHODS, default="vp")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="cluster-bootstrap resamples (0: delta method)",
    )
    p.add_argument("--bootstrap-scheme", choices=SCHEMES, default="auto", help=SCHEME_HELP)
    p.add_argument("--loss", choices=LOSSES, default="final")
    p.add_argument("--d-unit", choices=D_UNITS, default="events")
    p.add_argument(
        "--by",
        metavar="COLUMN",
        help=f"one law per group of the study's cells ({'|'.join(GROUP_BY)}; arch: per model family, "
        "each with its held-out-largest-size check)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=fit_laws)

    r = sub.add_parser("report", help="write results/<study>/report/index.html with fits and figures")
    add_study(r)
    r.add_argument("--out", type=Path, default=None, help="output directory (default: STUDY_DIR/report)")
    r.add_argument("--bootstrap", type=int, default=1000, metavar="N")
    r.add_argument("--bootstrap-scheme", choices=SCHEMES, default="auto", help=SCHEME_HELP)
    r.set_defaults(func=report)


def fit_laws(args: argparse.Namespace) -> int:
    from analysis.summary import format_summary
    from fm4npp.workflow.fits import FitSettings, fit_points, fit_study

    study = optional_study_dir(args, "fit-laws")
    if (study is None) == (args.input is None):
        raise FitError("fit-laws: give either STUDY_DIR or --input FILE (exactly one)")
    if args.by is not None and args.by not in GROUP_BY:  # checked here: one line, not argparse's usage
        raise FitError(
            f"fit-laws: --by '{args.by}' unknown{did_you_mean(args.by, GROUP_BY)}; "
            f"allowed: {allowed_list(GROUP_BY)}"
        )
    if args.by is not None and study is None:
        raise FitError(f"fit-laws: --by {args.by} groups a study's cells; give STUDY_DIR, not --input")
    settings = FitSettings.for_form(
        args.form,
        method=args.method,
        bootstrap=args.bootstrap,
        bootstrap_scheme=args.bootstrap_scheme,
        loss=args.loss,
        d_unit=args.d_unit,
        by=args.by,
    )
    results = fit_points(args.input, settings) if study is None else fit_study(study, settings)
    if args.json:
        keys = ("group", "form", "params", "ci", "n_points", "warnings", "isoflop", "holdout")
        slim = [{k: r[k] for k in keys if k in r} for r in results]
        print(json.dumps(slim[0] if len(slim) == 1 else slim, indent=1))
    else:
        print("\n\n".join(format_summary(r) for r in results))
    return 0


def report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    out = write_report(
        study_dir(args, "report"), args.out, n_boot=args.bootstrap, scheme=args.bootstrap_scheme
    )
    print(out)
    return 0
