"""CLI commands: ``fit-laws`` (fit scaling laws to a study or a file) and ``report`` (the HTML report)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fm4npp.errors import FitError, StoreError

FORM_CHOICES = ("chinchilla", "kaplan-n", "kaplan-d", "frontier", "all")
SCHEMES = (
    "auto",
    "cell",
    "cell_seed",
    "wild",
)  # analysis.bootstrap.SCHEMES (not imported: CLI stays light)
SCHEME_HELP = "auto: wild cluster bootstrap below 15 cells, else resample cells (seeds move with them)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the top-level parser."""
    p = sub.add_parser(
        "fit-laws", help="fit scaling laws to a study's finished cells or to a points file"
    )
    p.add_argument("study_dir", nargs="?", type=Path, help="results/<study> directory")
    p.add_argument(
        "--input",
        type=Path,
        help="CSV/Parquet with n_params, n_tokens|n_events, loss [flops, seed, group]",
    )
    p.add_argument("--form", choices=FORM_CHOICES, default="chinchilla")
    p.add_argument("--method", choices=("vp", "grid", "both"), default="vp")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="cluster-bootstrap resamples (0: delta method)",
    )
    p.add_argument("--bootstrap-scheme", choices=SCHEMES, default="auto", help=SCHEME_HELP)
    p.add_argument("--loss", choices=("final", "smoothed"), default="final")
    p.add_argument("--d-unit", choices=("events", "hits"), default="events")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=fit_laws)

    r = sub.add_parser("report", help="write results/<study>/report/index.html with fits and figures")
    r.add_argument("study_dir", type=Path)
    r.add_argument("--out", type=Path, default=None, help="output directory (default: STUDY_DIR/report)")
    r.add_argument("--bootstrap", type=int, default=1000, metavar="N")
    r.add_argument("--bootstrap-scheme", choices=SCHEMES, default="auto", help=SCHEME_HELP)
    r.set_defaults(func=report)


def fit_laws(args: argparse.Namespace) -> int:
    from analysis.inputs import from_cells, load_points
    from analysis.summary import ALL_FORMS, format_summary, summarise

    if (args.study_dir is None) == (args.input is None):
        raise FitError("fit-laws: give either STUDY_DIR or --input FILE (exactly one)")
    if args.bootstrap < 0:
        raise FitError(f"fit-laws: --bootstrap must be >= 0, got {args.bootstrap}")
    forms = ALL_FORMS if args.form == "all" else (args.form.replace("-", "_"),)
    if args.input is not None:
        data = load_points(args.input)
    else:
        from fm4npp.store import catalog

        data = from_cells(
            catalog.finished_cells(args.study_dir), args.loss, args.d_unit, str(args.study_dir)
        )
    results = summarise(data, forms, args.method, args.bootstrap, scheme=args.bootstrap_scheme)
    if args.study_dir is not None:
        from fm4npp.store import catalog

        for res in results:
            settings = {"form": res["form"], "method": args.method, "bootstrap": args.bootstrap,
                        "bootstrap_scheme": args.bootstrap_scheme,
                        "loss": args.loss, "d_unit": args.d_unit}  # fmt: skip
            catalog.save_fit(args.study_dir, res["form"], settings, res)
    if args.json:
        slim = [{k: r[k] for k in ("form", "params", "ci", "n_points", "warnings")} for r in results]
        print(json.dumps(slim[0] if len(slim) == 1 else slim, indent=1))
    else:
        print("\n\n".join(format_summary(r) for r in results))
    return 0


def _catalog(study_dir: Path) -> Any:
    """The store's catalog module, or a one-line StoreError (before the store lands, or no study)."""
    if not study_dir.is_dir():
        raise StoreError(f"{study_dir}: no such study directory")
    try:
        from fm4npp.store import catalog
    except ImportError as err:
        raise StoreError(f"{study_dir}: the catalog is not available ({err})") from err
    return catalog


def report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    print(write_report(args.study_dir, args.out, n_boot=args.bootstrap, scheme=args.bootstrap_scheme))
    return 0
