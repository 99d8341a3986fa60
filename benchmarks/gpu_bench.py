"""Standalone GPU benchmark (run on an H100): kernel parity and bf16 training throughput.

(a) If ``mamba_ssm`` imports: our torch path vs the fused kernels, outputs and gradients, fp32
    (expect ≈ 1e-5 relative) and bf16 autocast (expect < 1e-2).
(b) bf16-autocast training throughput (AdamW step, masked-MSE k-NNN loss) of FM4NPPModel for the
    paper rungs m1–m4 at L = 840 hits padded to 1024: events/s, tokens/s (padded, computed) and
    MFU = flops_per_token(rung) · tokens/s / 989 TFLOP/s (H100 SXM dense bf16), with the torch path
    and, if available, the kernels.
Prints a table; writes ``$OUT/gpu_bench.json`` when ``OUT`` is set.
Usage: ``python benchmarks/gpu_bench.py [--batch 16] [--steps 20] [--rungs m1,m2,m3,m4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from fm4npp.model.backbone import FM4NPPModel
from fm4npp.model.ladder import flops_per_token, get_rung
from fm4npp.model.mamba1 import Mamba
from fm4npp.model.mamba2 import Mamba2

PEAK_BF16_FLOPS = 989e12  # H100 SXM dense bf16
SEQ_VALID, SEQ_PADDED = 840, 1024


def _has_kernels() -> bool:
    try:
        import mamba_ssm  # noqa: F401
    except ImportError:
        return False
    return True


def _set_fast(model: torch.nn.Module, fast: bool) -> None:
    for mod in model.modules():
        if isinstance(mod, Mamba2):
            mod.use_mem_eff_path = fast
        elif isinstance(mod, Mamba):
            mod.use_fast_path = fast


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def parity(mamba1: bool = True) -> list[dict[str, Any]]:
    rows = []
    torch.manual_seed(0)
    mixers = {
        "mamba2 d256 N16": Mamba2(256, d_state=16, headdim=64, chunk_size=256),
        "mamba1 d128 N16": Mamba(128, d_state=16),
    }
    if not mamba1:
        mixers.pop("mamba1 d128 N16")
    for name, m in mixers.items():
        m = m.cuda()
        u = torch.randn(4, 1000, m.d_model, device="cuda")
        g = torch.randn_like(u)
        for dtype in ("fp32", "bf16"):
            res = {}
            for fast in (True, False):
                _set_fast(m, fast)
                m.zero_grad()
                x = u.clone().requires_grad_()
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                    y = m(x)
                (y.float() * g).sum().backward()
                grads = {k: p.grad.detach().clone() for k, p in m.named_parameters()}
                res[fast] = (y.detach().float(), x.grad.detach().clone(), grads, m.backend)
            (yk, gk, pk, bk), (yt, gt, pt, bt) = res[True], res[False]
            worst = max(pk, key=lambda k: _rel(pt[k], pk[k]))
            rows.append({
                "mixer": name, "dtype": dtype, "kernel_backend": bk, "torch_backend": bt,
                "out_rel": _rel(yt, yk), "grad_in_rel": _rel(gt, gk),
                "grad_param_rel": _rel(pt[worst], pk[worst]), "worst_param": worst,
            })  # fmt: skip
    return rows


def throughput(rung_name: str, fast: bool, batch: int, steps: int) -> dict[str, Any]:
    rung = get_rung(rung_name)
    torch.manual_seed(0)
    model = FM4NPPModel(rung, dropout=0.1).cuda()
    _set_fast(model, fast)
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=2e-4, betas=(0.9, 0.95)
    )
    feats = torch.rand(batch, SEQ_PADDED, 4, device="cuda")
    feats[:, SEQ_VALID:] = 0  # end padding
    target = torch.rand(batch, SEQ_PADDED, 30, 3, device="cuda")
    mask = torch.zeros(batch, SEQ_PADDED, 30, device="cuda", dtype=torch.bool)
    mask[:, :SEQ_VALID] = True

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pred = model(feats)
        err = ((pred.float() - target) ** 2).sum(-1)
        loss = (err * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 0.1)
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    tok_s = batch * SEQ_PADDED / dt
    return {
        "rung": rung_name, "backend": model.backend, "batch": batch, "step_s": dt,
        "events_per_s": batch / dt, "tokens_per_s": tok_s, "valid_tokens_per_s": batch * SEQ_VALID / dt,
        "mfu": flops_per_token(rung) * tok_s / PEAK_BF16_FLOPS,
        "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30,
    }  # fmt: skip


def profile_step(rung_name: str, fast: bool, batch: int) -> None:
    """Top CUDA kernels of a few training steps (where the time goes)."""
    from torch.profiler import ProfilerActivity, profile

    model = FM4NPPModel(get_rung(rung_name)).cuda()
    _set_fast(model, fast)
    feats = torch.rand(batch, SEQ_PADDED, 4, device="cuda")
    for i in range(6):
        if i == 3:
            prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            prof.__enter__()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(feats).float().square().mean()
        loss.backward()
    torch.cuda.synchronize()
    prof.__exit__(None, None, None)
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rungs", default="m1,m2,m3,m4")
    ap.add_argument("--tag", default="", help="suffix of the JSON file written to $OUT")
    ap.add_argument(
        "--no-mamba1-kernels",
        action="store_true",
        help="mamba_ssm was built without its CUDA extension: skip Mamba1 kernels",
    )
    ap.add_argument("--no-parity", action="store_true")
    ap.add_argument(
        "--batches", default="", help="comma list of batch sizes to sweep (overrides --batch)"
    )
    ap.add_argument("--profile", default="", help="rung to profile (top CUDA kernels of one step)")
    ap.add_argument("--paths", default="torch,kernel", help="which paths to time: torch, kernel")
    args = ap.parse_args()
    if args.no_mamba1_kernels:
        import fm4npp.model.mamba1 as m1mod

        m1mod._inner_fn = lambda: None  # type: ignore[assignment]
    if not torch.cuda.is_available():
        raise SystemExit("gpu_bench: no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = True
    kernels = _has_kernels()
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                              "mamba_ssm": kernels, "parity": [], "throughput": []}  # fmt: skip
    print(f"device {report['device']}, torch {torch.__version__}, mamba_ssm importable: {kernels}")
    if kernels and not args.no_parity:
        report["parity"] = parity(mamba1=not args.no_mamba1_kernels)
        print(f"{'mixer':<17} {'dtype':<5} {'out rel':>9} {'dx rel':>9} {'dparam rel':>11}  worst param")
        for r in report["parity"]:
            print(f"{r['mixer']:<17} {r['dtype']:<5} {r['out_rel']:>9.2e} {r['grad_in_rel']:>9.2e} "
                  f"{r['grad_param_rel']:>11.2e}  {r['worst_param']}")  # fmt: skip
    print(
        f"{'rung':<5} {'backend':<9} {'batch':>5} {'step s':>8} {'events/s':>9} {'tokens/s':>11} {'MFU':>6} {'mem GB':>7}"
    )
    if args.profile:
        profile_step(args.profile, kernels, args.batch)
    batches = [int(b) for b in args.batches.split(",")] if args.batches else [args.batch]
    paths = [p == "kernel" for p in args.paths.split(",") if kernels or p == "torch"]
    for name, fast, batch in ((n, f, b) for n in args.rungs.split(",") for f in paths for b in batches):
        if True:
            try:
                r = throughput(name, fast, batch, args.steps)
            except torch.OutOfMemoryError:
                print(f"{name:<5} {'kernel' if fast else 'torch':<9} out of memory at batch {batch}")
                torch.cuda.empty_cache()
                continue
            report["throughput"].append(r)
            print(f"{r['rung']:<5} {r['backend']:<9} {r['batch']:>5} {r['step_s']:>8.4f} {r['events_per_s']:>9.1f} "
                  f"{r['tokens_per_s']:>11,.0f} {r['mfu']:>6.1%} {r['peak_mem_gb']:>7.2f}")  # fmt: skip
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"gpu_bench{args.tag}.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
