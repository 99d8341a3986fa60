"""CLI commands: ``data generate``, ``data stats``, ``data convert-tpcpp``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's subcommands to the top-level parser."""
    data = sub.add_parser("data", help="generate, inspect and convert event data")
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    gen = dsub.add_parser("generate", help="PYTHIA 8 (or particle gun) + fast TPC simulation → shards")
    gen.add_argument("--events", type=int, required=True, help="number of events")
    gen.add_argument("--out", type=Path, required=True, help="new output directory")
    gen.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    gen.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    gen.add_argument("--tune", default="default", help="PYTHIA tune: default, sphenix_mb, detroit")
    gen.add_argument("--trigger", choices=("mbd", "none"), default="mbd",
                     help="PYTHIA event selection: mbd = charged particle in both MBD arms (default)")
    gen.add_argument("--gun", action="store_true", help="particle gun instead of PYTHIA (no noise)")
    gen.add_argument("--gun-multiplicity", default="5-15", help="N or MIN-MAX tracks per gun event")
    gen.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    gen.set_defaults(func=_generate)

    st = dsub.add_parser("stats", help="summary statistics (and figures) of a shard set")
    st.add_argument("path", type=Path, help="shard set directory")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.add_argument("--plots", type=Path, default=None, help="write PNG figures into this directory")
    st.set_defaults(func=_stats)

    conv = dsub.add_parser(
        "convert-tpcpp",
        help="convert TPCpp-10M npz: the archive's top folder (→ OUT/pretrain, OUT/labelled) or a split",
    )
    conv.add_argument(
        "src", type=Path,
        help="archive top folder (unlabelled *.npz, labeled/{train,validation,test}) or a split folder",
    )  # fmt: skip
    conv.add_argument("--out", type=Path, required=True, help="new output directory")
    conv.add_argument("--max-hits", type=int, default=3200, help="drop events above (0: keep all)")
    conv.set_defaults(func=_convert)


def _generate(args: argparse.Namespace) -> int:
    from fm4npp.data.fastsim import SimConfig
    from fm4npp.data.generate import generate_dataset
    from fm4npp.data.gun import GunConfig, parse_multiplicity

    gun = GunConfig(multiplicity=parse_multiplicity(args.gun_multiplicity)) if args.gun else None
    shard_set = generate_dataset(
        args.out, args.events, args.seed, workers=args.workers, gun=gun,
        progress=not args.no_progress, tune=args.tune, sim=SimConfig(trigger=args.trigger),
    )  # fmt: skip
    print(f"wrote {len(shard_set)} events to {args.out}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from fm4npp.data.stats import summarize_shards

    summary = summarize_shards(args.path)
    if args.plots is not None:
        from fm4npp.data.plots import write_figures
        from fm4npp.data.shards import ShardSet

        shard_set = ShardSet(args.path)
        events = shard_set.read_events(shard_set.event_ids[:2000])  # figures need ≤ 2,000 events
        summary["plots"] = [str(p) for p in write_figures(events, args.plots)]
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
        return 0
    from fm4npp.cli.render import key_values
    from fm4npp.data.validation import format_validation

    print(key_values({k: v for k, v in summary.items() if k not in ("metadata", "validation")}, width=30))
    print("\nagainst TPCpp-10M (SPEC §2.2–2.4, §3):")
    print(format_validation(summary["validation"]))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from fm4npp.data.tpcpp import convert_tpcpp
    from fm4npp.data.tpcpp_archive import convert_archive, is_archive_root

    if is_archive_root(args.src):
        report = convert_archive(args.src, args.out, max_hits=args.max_hits or None, progress=print)
        print("\n".join(report.lines()))
        print(f"data config: path: {report.pretrain_dir}  labelled_path: {report.labelled_dir}")
        return 0

    shard_set, dropped = convert_tpcpp(args.src, args.out, max_hits=args.max_hits or None)
    print(
        f"wrote {len(shard_set)} events to {args.out} ({dropped} dropped above {args.max_hits} points)"
    )
    return 0
