"""The φ seam in the k-NNN objective: share of targets across φ = ±π and what a ring-perfect
predictor pays under the compat (absolute φ_n) and the fixed (wrapped) loss (SPEC §4.4, issue 12).

Fast-sim PYTHIA 8 p+p events at 200 GeV, serialized in fixed mode (EPR; kNN with wrapped Δφ) and in
compat mode (kNN on absolute φ_n), k = 8 and 30. The ring-perfect predictor outputs each neighbour's
η_n and r_n exactly and its φ_n as seen from the query's side of the seam, φ_q + wrap(φ_n − φ_q).
Its loss under the wrapped objective must be 0 (the oracle check); under the absolute one it is the
artefact that used to sit in the fitted floor E. Token-weighted as the training loss.

    PYTHONPATH=. python benchmarks/bench_seam.py [--events 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fm4npp.data.generate import simulate_events
from fm4npp.data.serialize import fit_edges, serialize_event
from fm4npp.train.objective import PHI, masked_error_sum


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    t0 = time.perf_counter()
    events = [e for e in simulate_events(args.events, seed=args.seed) if e.n_hits]
    print(f"{len(events)} fast-sim events, {sum(e.n_hits for e in events) / len(events):.0f} hits/event")
    print("| mode | k | targets | across the seam | ring-perfect loss, absolute φ | wrapped φ |")
    print("|---|---|---|---|---|---|")
    for mode in ("fixed", "compat"):
        edges = fit_edges(events, mode=mode)
        for k in (8, 30):
            n = cross = 0
            sums = {True: 0.0, False: 0.0}
            for ev in events:
                s = serialize_event(ev, edges, mode=mode, k=k)
                phi_q = s.feats[:, None, 1 + PHI].astype(np.float64)
                d = s.targets[..., PHI].astype(np.float64) - phi_q
                pred = s.targets.copy()
                pred[..., PHI] = (phi_q + d - np.round(d)).astype(np.float32)
                n += int(s.target_mask.sum())
                cross += int(((np.abs(d) > 0.5) & s.target_mask).sum())
                for wrap in (True, False):
                    err = masked_error_sum(
                        torch.from_numpy(pred),
                        torch.from_numpy(s.targets),
                        torch.from_numpy(s.target_mask),
                        wrap,
                    )
                    sums[wrap] += float(err)
            print(
                f"| {mode} | {k} | {n:,} | {100 * cross / n:.2f} % | {sums[False] / n:.4f} | {sums[True] / n:.1e} |"
            )
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
