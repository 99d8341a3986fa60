"""CPU forward + backward throughput of one mixer (torch path, fp32), tokens/s.

Mamba2 (SPEC §5.3 settings: N = d/16, headdim 64 → at least 2 heads, chunk 64 on CPU per SPEC §7.4)
and Mamba1 (N 16) at d 64/128/256, L 1024, batch 4 (SPEC §7.5 table for comparison).
Usage: ``python benchmarks/bench_mamba.py [--threads 2] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from fm4npp.model.mamba1 import Mamba
from fm4npp.model.mamba2 import Mamba2


def tokens_per_s(m: torch.nn.Module, d: int, L: int, batch: int, repeat: int) -> float:
    u = torch.randn(batch, L, d, requires_grad=True)
    m(u).sum().backward()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        m(u).square().mean().backward()
        best = min(best, time.perf_counter() - t0)
    return batch * L / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"threads {args.threads}, L {args.seq_len}, batch {args.batch}, fp32, forward + backward")
    print(f"{'d_model':>7} {'Mamba2 tok/s':>13} {'Mamba1 tok/s':>13}")
    for d in (64, 128, 256):
        m2 = Mamba2(d, d_state=max(d // 16, 4), headdim=min(64, d), chunk_size=64)
        m1 = Mamba(d, d_state=16)
        t2 = tokens_per_s(m2, d, args.seq_len, args.batch, args.repeat)
        t1 = tokens_per_s(m1, d, args.seq_len, args.batch, args.repeat)
        print(f"{d:>7} {t2:>13,.0f} {t1:>13,.0f}")


if __name__ == "__main__":
    main()
