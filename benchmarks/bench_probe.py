"""Edge probe per backbone (issue 11): seconds per variant, the cheap way to follow representation quality.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_probe.py --study /tmp/study --models q3 --labelled 200
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from fm4npp.config.schema import DataConfig, EvalConfig, RunConfig, TrainConfig
from fm4npp.eval.probe import run_probe
from fm4npp.model import ladder
from fm4npp.model.embedding import NerfEmbedding
from fm4npp.train.downstream import build_backbone, feature_sets, load_labelled
from fm4npp.train.features import backbone_feature_fn, embedding_feature_fn, load_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True)
    ap.add_argument("--models", nargs="+", default=["q3"])
    ap.add_argument("--labelled", type=int, default=200)
    ap.add_argument("--val-events", type=int, default=60)
    ap.add_argument("--test-events", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.study)
    cfg = RunConfig(study="probe", cell_id="probe", model=args.models[-1], dataset="qd3", n_events=1600, seed=0,
                    data_dir=str(root / "data"), data=DataConfig(val_events=200, test_events=200),
                    train=TrainConfig(k_neighbours=8), eval=EvalConfig(labelled_events=(args.labelled,)))  # fmt: skip
    data = load_labelled(cfg)
    data = replace(data, val=tuple(x[: args.val_events] for x in data.val),  # type: ignore[arg-type]
                   test=tuple(x[: args.test_events] for x in data.test))  # type: ignore[arg-type]  # fmt: skip
    variants = []
    for m in args.models:
        model = build_backbone(cfg, m, 0)
        ckpt = root / "runs" / f"cell{m}" / "checkpoints"
        load_weights(ckpt / "best.pt" if (ckpt / "best.pt").is_file() else ckpt / "last.pt", model)
        variants.append((f"fm-{m}", backbone_feature_fn(model)))
        variants.append((f"random-init backbone {m}", backbone_feature_fn(build_backbone(cfg, m, 0))))
    d = max(ladder.get_rung(m).d_model for m in args.models)
    variants.append(("random embedding", embedding_feature_fn(NerfEmbedding(d, seed=0))))
    print("| variant | probe ARI | ARI_signal | efficiency | purity | edge acc | features s | probe s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, fn in variants:
        t0 = time.perf_counter()
        sets = feature_sets(data, fn, torch.device("cpu"))
        t_feat = time.perf_counter() - t0
        m = run_probe(sets["pool"], sets["val"], sets["test"])
        print(f"| {name} | {m['ari']:.3f} | {m['ari_signal']:.3f} | {m['efficiency']:.3f} | {m['purity']:.3f} | "
              f"{m['edge_accuracy']:.3f} | {t_feat:.1f} | {m['probe_time_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
