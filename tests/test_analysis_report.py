"""Report and CLI: a synthetic study renders to a self-contained page; fit-laws prints JSON (SCALING §8)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.report import build_report
from analysis.simulate import DATA_LADDER, LADDER_N, SURFACES, Design, simulate
from fm4npp.cli.main import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_study() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """cells / loss_curves / eval_metrics tables shaped like the catalog's."""
    d = simulate(SURFACES["fm4npp"], Design(N=LADDER_N[:5], D=DATA_LADDER[::2], seeds=2), sigma=0.01,
                 rng=np.random.default_rng(0))  # fmt: skip
    n = len(d)
    cells = pd.DataFrame({
        "cell_id": [f"c{i:03d}" for i in range(n)], "model": "m", "arch": "mamba2", "seed": d.seed,
        "n_params": d.N, "n_events": d.D, "n_hits": d.D * 850, "flops": d.C, "final_val_loss": d.L,
        "smoothed_val_loss": d.L, "status": "finished", "reason": "",
        "node_hours_planned": d.N * d.D * 1e-14, "wall_time_s": d.N * d.D * 1e-14 * 3600 * 1.1,
    })  # fmt: skip
    cells.loc[3, ["status", "reason"]] = ["failed", "NaN loss at step 120"]
    curves = pd.concat([
        pd.DataFrame({"cell_id": c, "step": np.arange(8), "events_seen": np.geomspace(1e3, ev, 8), "hits_seen": 0,
                      "lr": 1e-3, "train_loss": loss * (1 + np.geomspace(1, 0.01, 8)),
                      "val_loss": loss * (1 + np.geomspace(1, 0.01, 8))})
        for c, ev, loss in zip(cells.cell_id[:4], cells.n_events[:4], cells.final_val_loss[:4], strict=True)
    ])  # fmt: skip
    evals = pd.DataFrame([
        {"cell_id": "x", "model": "m", "n_params": nn, "variant": "v", "task": "tracking", "metric": "ARI",
         "value": 1 - 0.5 * nn**-0.2 * (1 + 0.01 * s), "seed": s, "n_labelled": 1000}
        for nn in LADDER_N[:5] for s in range(2)
    ])  # fmt: skip
    return cells, curves, evals


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    cells, curves, evals = synthetic_study()
    out = tmp_path_factory.mktemp("report")
    return build_report(cells, out, curves, evals, n_boot=40)


def test_report_is_self_contained(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    imgs = re.findall(r'<img[^>]*src="([^"]+)"', text)
    assert len(imgs) >= 12
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    names = re.findall(r'<img alt="([^"]+)"', text)
    for name in names:
        assert (report.parent / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
        assert (report.parent / f"{name}.svg").stat().st_size > 0
    for name in ("loss_vs_n", "loss_vs_d", "residuals", "frontier", "isoflop", "allocation", "parity",
                 "training_curves", "downstream", "node_hours"):  # fmt: skip
        assert name in names
    assert "NaN loss at step 120" in text  # failed cells and why
    assert "reduction=sum" in text  # fit card settings
    fits = json.loads((report.parent / "fits.json").read_text())
    assert fits["chinchilla"]["params"]["alpha"] == pytest.approx(0.35, rel=0.2)


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium not installed (apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    """Every <img> decodes in a real browser: a probe script counts images with naturalWidth 0."""
    probe = (
        "<script>window.addEventListener('load', () => { const imgs = [...document.images];"
        " document.body.setAttribute('data-images', imgs.length);"
        " document.body.setAttribute('data-broken', imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length);"
        " });</script></body>"
    )
    page = tmp_path / "index.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", probe), encoding="utf-8")
    out = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = re.search(r'data-images="(\d+)"', out.stdout)
    assert found is not None, out.stdout[-500:]
    assert int(found.group(1)) >= 12
    assert 'data-broken="0"' in out.stdout


def test_fit_laws_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = simulate(SURFACES["fm4npp"], Design(), sigma=0.0)
    path = tmp_path / "points.parquet"
    pd.DataFrame({"n_params": d.N, "n_events": d.D, "loss": d.L, "flops": d.C}).to_parquet(path)
    assert main(["fit-laws", "--input", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["form"] == "chinchilla"
    assert out["n_points"] == len(d)
    assert out["params"]["alpha"] == pytest.approx(0.35, rel=1e-4)
    assert set(out["ci"]) >= {"E", "A", "B", "alpha", "beta"}
    assert main(["fit-laws", "--input", str(path), "--form", "kaplan-n"]) == 0
    assert "alpha" in capsys.readouterr().out
    assert main(["fit-laws", "--input", str(tmp_path / "missing.csv")]) == 8
    assert "no such file" in capsys.readouterr().err


def test_analysis_never_imports_torch() -> None:
    code = ("import sys, analysis.report, analysis.uncertainty, analysis.validation, analysis.downstream, "
            "fm4npp.cli.analysis; print('torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
