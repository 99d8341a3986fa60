"""Report and CLI: a synthetic study renders to a self-contained page; fit-laws prints JSON (SCALING §8)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.browser import VIEWPORT, find_chromium, probe, save_first_screen
from analysis.report import build_report
from analysis.simulate import DATA_LADDER, LADDER_N, SURFACES, Design, simulate
from analysis.summary import summarise
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
    models = {n: f"m{i + 1}" for i, n in enumerate(sorted(set(cells["n_params"])))}
    cells["model"] = cells["n_params"].map(models)
    top = cells[cells["n_events"] == cells["n_events"].max()].drop_duplicates("n_params")
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(2):  # FM improves with N; adapter-only 0.1 below; Hough flat
        for c, nn in zip(top["cell_id"], top["n_params"], strict=True):
            ari = 0.55 + 0.06 * np.log10(nn / 3e5) + rng.normal(0, 0.005)
            rows.append({"cell_id": c, "variant": "fm", "n_params": nn, "value": ari})
            rows.append({"cell_id": f"baseline-adapter_only-{models[nn]}", "variant": "adapter_only",
                         "n_params": np.nan, "value": ari - 0.1})  # fmt: skip
        rows.append({"cell_id": "baseline-hough", "variant": "hough", "n_params": np.nan, "value": 0.5})
    evals = pd.DataFrame(rows).assign(task="tracking", metric="ari", seed=[i // 11 for i in range(22)],
                                      n_labelled=1000)  # fmt: skip
    return cells, curves, evals


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    cells, curves, evals = synthetic_study()
    out = tmp_path_factory.mktemp("report")
    return build_report(cells, out, curves, evals, n_boot=40)


def test_report_is_self_contained(report: Path) -> None:
    """One folder: every <img> is a PNG beside the page (with its SVG), long tables also as CSV, no network."""
    text = report.read_text(encoding="utf-8")
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', text)
    assert len(srcs) >= 14
    for src in srcs:
        assert "/" not in src
        assert src.endswith(".png")
        assert (report.parent / src).read_bytes().startswith(PNG_MAGIC)
        assert (report.parent / src.replace(".png", ".svg")).stat().st_size > 0
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing fetched from the network
    names = re.findall(r'<img alt="([^"]+)"', text)
    for name in ("headline_loss", "headline_downstream", "loss_vs_n", "loss_vs_d", "residuals", "frontier",
                 "isoflop", "isoflop_nopt", "allocation", "parity", "training_curves", "downstream",
                 "node_hours"):  # fmt: skip
        assert name in names
    assert names[:2] == ["headline_loss", "headline_downstream"]  # figures lead the page
    assert text.index("headline_loss") < text.index("<table class='t'>")
    for href in re.findall(r'href="([^"]+\.csv)"', text):
        assert (report.parent / href).read_text().count("\n") >= 2
    assert "<details>" in text
    assert "NaN loss at step 120" in text  # failed cells and why
    assert "reduction=sum" in text  # fit card settings
    assert "could not be drawn" not in text
    fits = json.loads((report.parent / "fits.json").read_text())
    assert fits["chinchilla"]["params"]["alpha"] == pytest.approx(0.35, rel=0.2)
    # one model family (arch): no family section, figure or fits (tests/test_fit_by_arch.py has two)
    assert "Model families" not in text
    assert "families_loss_vs_n" not in names
    assert "families" not in fits


def test_first_screen_states_law_verdicts_and_next_rung(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    first = text[: text.index("What to run next")]
    assert "L(N, D) = E + A/N<sup>α</sup> + B/D<sup>β</sup>" in first
    assert "IsoFLOP cross-check" in first
    assert "Held out the largest size" in first
    verdicts = re.findall(r"<span class='badge ([a-z-]+)'>", first)
    assert len(verdicts) == 4
    # the synthetic truth: power laws in N and D, FM 0.1 above adapter-only, ARI rising with N
    assert verdicts == ["supported"] * 4, verdicts
    assert "Next rung <b>m6</b>" in text
    assert "Runs that would most narrow α and β per node-hour" in text


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_report_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    """A real browser at 1400×900: no console message, no broken image, verdict and headline figure on the
    first screen; the quickstart's screenshot helper writes a PNG of exactly that viewport."""
    seen = probe(report)
    assert seen.inner[0] == VIEWPORT[0]
    assert seen.images >= 14
    assert seen.broken == []
    assert seen.console == []
    assert seen.visible == {"verdict": True, "headline": True}
    png = save_first_screen(report)
    assert png is not None
    assert png.name == "first-screen.png"
    head = png.read_bytes()[:24]
    assert head.startswith(PNG_MAGIC)
    assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == VIEWPORT
    assert not list(report.parent.glob("_probe_*"))


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (apt-get install chromium)")
def test_probe_sees_a_broken_page(tmp_path: Path) -> None:
    """The probe can fail: a missing image, a script error and an off-screen verdict are all reported."""
    page = tmp_path / "index.html"
    page.write_text("<!doctype html><html><body><div style='height:2000px'></div><table id='verdict'>"
                    "<tr><td>x</td></tr></table><div id='headline'><img alt='gone' src='gone.png'></div>"
                    "<script>undefinedFn()</script></body></html>")  # fmt: skip
    seen = probe(page)
    assert seen.broken == ["gone"]
    assert any("undefinedFn" in m for m in seen.console)
    assert seen.visible["verdict"] is False


def partial_cells() -> pd.DataFrame:
    """4 sizes × 3 D levels, one seed: 7 finished, 1 failed, 2 running, 2 planned."""
    d = simulate(SURFACES["fm4npp"], Design(N=LADDER_N[:4], D=DATA_LADDER[::4], seeds=1), sigma=0.005,
                 rng=np.random.default_rng(2))  # fmt: skip
    cells = pd.DataFrame({
        "cell_id": [f"c{i:02d}" for i in range(len(d))], "model": [f"m{LADDER_N.index(n) + 1}" for n in d.N],
        "seed": 0, "n_params": d.N, "n_events": d.D, "flops": d.C, "final_val_loss": d.L,
        "smoothed_val_loss": d.L, "status": "done", "reason": "", "node_hours_planned": d.N * d.D * 1e-14,
    })  # fmt: skip
    cells.loc[[9, 10], "status"] = "running"
    cells.loc[[11, 8], ["status", "final_val_loss", "smoothed_val_loss"]] = ["planned", np.nan, np.nan]
    cells.loc[5, ["status", "reason"]] = ["failed", "out of memory"]
    return cells


def test_partial_study_renders_what_is_finished(tmp_path: Path) -> None:
    cells = partial_cells()
    index = build_report(cells, tmp_path / "partial", n_boot=0)
    text = index.read_text(encoding="utf-8")
    assert "Partial study" in text
    assert "7 of 12 cells finished (2 running, 1 failed, 2 planned)" in text
    assert "out of memory" in text
    assert "headline_loss.png" in text
    assert "could not be drawn" not in text


def test_study_with_nothing_finished_still_renders(tmp_path: Path) -> None:
    cells = partial_cells().assign(status="planned", final_val_loss=np.nan, smoothed_val_loss=np.nan)
    index = build_report(cells, tmp_path / "empty", n_boot=0)
    text = index.read_text(encoding="utf-8")
    assert "No joint law yet" in text
    assert "0 of" in text
    assert "Partial study" in text
    assert text.count("inconclusive</span>") == 4


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
    assert main(["fit-laws", "--input", str(path)]) == 0
    assert "IsoFLOP (Approach 2) a = 0.41" in capsys.readouterr().out  # the cross-check beside a
    # in the summary record: a = β/(α+β) = 0.25/0.6 both ways (noise-free: only the IsoFLOP's own bias)
    iso = summarise(d, ("chinchilla",))[0]["isoflop"]
    assert iso["a"] == pytest.approx(0.25 / 0.6, abs=0.015)
    assert iso["joint_a"] == pytest.approx(0.25 / 0.6, rel=1e-4)
    assert main(["fit-laws", "--input", str(path), "--form", "kaplan-n"]) == 0
    assert "alpha" in capsys.readouterr().out
    assert main(["fit-laws", "--input", str(tmp_path / "missing.csv")]) == 8
    assert "no such file" in capsys.readouterr().err


def test_analysis_never_imports_torch() -> None:
    code = ("import sys, analysis.report, analysis.uncertainty, analysis.validation, analysis.downstream, "
            "fm4npp.cli.analysis; print('torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_extra_tables_and_sections_slot_in(tmp_path: Path) -> None:
    """The hooks for downstream statistics: a table in ``extra_tables`` and a section function."""
    from analysis.report import analyse, render

    cells = partial_cells().assign(status="planned", final_val_loss=np.nan, smoothed_val_loss=np.nan)
    res = analyse(cells, n_boot=0)
    res.extra_tables["Label efficiency"] = pd.DataFrame({"n_labelled": [100, 1000], "ari": [0.4, 0.6]})
    index = render(res, tmp_path / "hooks", "hooks", extra_sections=[lambda r, page: "<h2>Custom</h2>"])
    text = index.read_text(encoding="utf-8")
    assert text.index("<h2>Custom</h2>") < text.index("<h2>Downstream statistics</h2>") < text.index("<h2>Study status")
    assert (tmp_path / "hooks" / "label_efficiency.csv").read_text().splitlines()[1] == "100,0.4"


def test_paired_event_comparisons_drive_the_downstream_verdicts(tmp_path: Path) -> None:
    """Per-event scores: FM 0.05 ARI above the random embedding on every event (events vary by ±0.2), PID
    accuracy equal → tracking 'supported' against the random embedding (FM4NPP's adapter-only), PID
    'inconclusive'; the paired table and the event-bootstrap table are on the page."""
    cells, curves, evals = synthetic_study()
    top = cells.loc[cells["n_params"].idxmax()]
    evals = pd.concat([evals, pd.DataFrame({
        "cell_id": [top["cell_id"], "baseline-random_embedding"], "variant": ["fm", "random_embedding"],
        "n_params": [top["n_params"], np.nan], "value": 0.7, "task": "pid", "metric": "accuracy", "seed": 0,
        "n_labelled": 1000})])  # fmt: skip
    rng = np.random.default_rng(3)
    base = rng.uniform(0.3, 0.7, 300)
    rows = []
    for variant, cell, shift in (("fm", top["cell_id"], 0.05), ("random_embedding", "baseline-random_embedding", 0.0)):
        for e, b in enumerate(base):
            rows.append({"task": "tracking", "metric": "ari", "value": b + shift})
            for m, v in (("n_found", 1.0), ("n_particles", 1.0), ("n_matched", 1.0), ("n_tracks", 1.0)):
                rows.append({"task": "tracking", "metric": m, "value": v})
            rows += [{"task": "pid", "metric": "n_points", "value": 10.0},
                     {"task": "pid", "metric": "n_correct", "value": float(7 + (e % 3 == 0))}]  # fmt: skip
            for r in rows[-7:]:
                r.update(variant=variant, cell_id=cell, event_id=e, seed=0, n_labelled=1000)
    events = pd.DataFrame(rows)
    events = pd.concat([events, events.assign(n_labelled=100)], ignore_index=True)  # a label curve
    events["model"] = events["cell_id"].map({top["cell_id"]: top["model"]})
    events["n_params"] = events["cell_id"].map({top["cell_id"]: top["n_params"]})
    index = build_report(cells, tmp_path / "paired", curves, evals, n_boot=0, events=events)
    text = index.read_text(encoding="utf-8")
    first = text[: text.index("What to run next")]
    assert "FM beats adapter-only (random embedding) (tracking ari)" in first
    assert "paired event bootstrap, 100 labelled events" in first  # the fewest labels decide
    badges = re.findall(r"<span class='badge ([a-z-]+)'>", first)
    assert badges[2:4] == ["supported", "inconclusive"], badges  # tracking, then pid
    assert "FM vs baselines on the same test events (paired event bootstrap, 95%)" in text
    table = pd.read_csv(tmp_path / "paired" / "fm_vs_baselines_on_the_same_test_events_paired_event_bootstrap_95.csv")
    ari = table[(table["metric"] == "ari")].iloc[0]
    assert ari["FM − baseline"] == pytest.approx(0.05)
    assert ari["verdict"] == "FM better"
    assert "Downstream metrics with 95% event-bootstrap intervals" in text
    # several FM sizes in the study: metric vs N stays the headline, the label curve goes below
    assert re.findall(r'<img alt="([^"]+)"', first)[1] == "headline_downstream"
    assert '<img alt="label_efficiency"' in text
