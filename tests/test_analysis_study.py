"""The report on a tiny real-shaped study: 3 sizes × 3 D levels × 1–2 seeds, noisy, with downstream rows.

Tables are shaped like ``fm4npp.store.catalog`` returns them: ``finished_cells`` (with a failed and a
planned cell), ``loss_curves`` and ``eval_metrics`` (variants fm, adapter_only, random_embedding, hough;
baselines with NaN model and N).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.downstream import prepare_evals
from analysis.laws import FORMS, predict
from analysis.report import analyse, render
from analysis.simulate import SURFACES

SIZES = {"m1": 2.0e5, "m2": 1.2e6, "m3": 7.0e6}
D_LEVELS = (1e5, 1e6, 1e7)
METRICS = {"tracking": ("ari", "efficiency", "purity"), "pid": ("accuracy",), "noise": ("accuracy",)}


def _metric(n: float, base: float, rng: np.random.Generator) -> float:
    return float(np.clip(1 - base * (n / 1e5) ** -0.25 + rng.normal(0, 0.01), 0, 1))


def tiny_study(seeds: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(cells, curves, evals) of a 9-cell study; ``seeds`` = 2 gives 18 runs, 1 gives 9."""
    rng = np.random.default_rng(seed)
    rows = []
    for model, n in SIZES.items():
        for d in D_LEVELS:
            for s in range(seeds):
                loss = float(predict(FORMS["chinchilla"], SURFACES["fm4npp"], N=n, D=d)) * np.exp(
                    rng.normal(0, 0.02)
                )
                rows.append({"cell_id": f"{model}-d{d:.0e}-s{s}", "model": model, "arch": "mamba2",
                             "dataset": "d", "seed": s, "n_params": n, "n_events": d, "events_seen": d,
                             "n_hits": d * 850, "flops": 6 * n * d, "final_val_loss": loss,
                             "smoothed_val_loss": loss, "status": "finished", "reason": None,
                             "node_hours_planned": 0.1, "wall_time_s": 300.0, "gpus": 1})  # fmt: skip
    cells = pd.DataFrame(rows)
    extra = cells.iloc[[0, 1]].copy()
    extra["cell_id"] = ["m3-d3e7-s0", "m3-d3e6-s0"]
    extra["n_params"], extra["model"], extra["n_events"] = SIZES["m3"], "m3", [3e7, 3e6]
    extra["status"], extra["reason"] = ["failed", "planned"], ["NaN loss at step 4000", None]
    extra["final_val_loss"] = np.nan
    cells = pd.concat([cells, extra], ignore_index=True)

    done = cells[cells["status"] == "finished"]
    curves = []
    for c, ev, loss in zip(done["cell_id"], done["n_events"], done["final_val_loss"], strict=True):
        steps = np.arange(12)
        val = loss * (1 + 2 * np.geomspace(1, 0.01, 12)) * np.exp(rng.normal(0, 0.003, 12))
        val[steps % 2 == 1] = np.nan  # validation every other logging step
        val[-1] = loss
        curves.append(pd.DataFrame({"cell_id": c, "step": steps * 100, "events_seen": np.geomspace(ev / 100, ev, 12),
                                    "hits_seen": 0.0, "lr": 1e-3, "train_loss": loss * 1.1, "val_loss": val,
                                    "tokens_per_s": 1e5, "wall_time_s": steps * 10.0}))  # fmt: skip

    evals = []

    def add(cell_id: str, variant: str, model: object, n: float, task: str, metric: str, v: float,
            s: int, n_lab: int) -> None:  # fmt: skip
        evals.append({"cell_id": cell_id, "variant": variant, "task": task, "metric": metric, "value": v,
                      "seed": s, "n_labelled": n_lab, "model": model, "n_params": n})  # fmt: skip

    for task, metrics in METRICS.items():
        for metric in metrics:
            for n_lab in (100, 1000):
                for c, model, n in zip(done["cell_id"], done["model"], done["n_params"], strict=True):
                    for s in range(2):
                        add(c, "fm", model, n, task, metric, _metric(n, 0.3, rng), s, n_lab)
                for model, n in SIZES.items():
                    for s in range(2):
                        add(f"baseline-adapter_only-{model}", "adapter_only", None, np.nan, task, metric,
                            _metric(n, 0.6, rng), s, n_lab)  # fmt: skip
                for s in range(2):
                    add("baseline-random_embedding", "random_embedding", None, np.nan, task, metric,
                        0.5 + 0.01 * s, s, n_lab)  # fmt: skip
            if task == "tracking":
                add("baseline-hough", "hough", None, np.nan, task, metric, 0.8, 0, 0)
    add("baseline-hough", "hough", None, np.nan, "tracking", "ms_per_event", 12.0, 0, 0)
    return cells, pd.concat(curves, ignore_index=True), pd.DataFrame(evals)


def test_prepare_evals_maps_adapter_only_to_model_n() -> None:
    cells, _, evals = tiny_study(1)
    prep = prepare_evals(evals, cells)
    ad = prep[prep["variant"] == "adapter_only"]
    assert set(ad["n_params"]) == set(SIZES.values())
    for model, n in SIZES.items():
        assert (ad.loc[ad["cell_id"] == f"baseline-adapter_only-{model}", "n_params"] == n).all()
    assert prep.loc[prep["variant"].isin(["hough", "random_embedding"]), "n_params"].isna().all()
    fm = prep[prep["variant"] == "fm"]
    assert set(fm["n_labelled"]) == {1000}  # the largest labelled budget only
    assert set(fm["n_events"]) == set(D_LEVELS)


@pytest.fixture(scope="module", params=[2, 1], ids=["two_seeds", "one_seed"])
def study(request, tmp_path_factory) -> tuple[int, object, Path]:
    cells, curves, evals = tiny_study(request.param)
    res = analyse(cells, curves, evals, n_boot=60)
    index = render(res, tmp_path_factory.mktemp("tiny"), "tiny study")
    return request.param, res, index


def _legend(fig: object) -> str:
    return " | ".join(
        t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()
    )


def test_tiny_study_report_sections(study) -> None:
    seeds, _, index = study
    text = index.read_text(encoding="utf-8")
    # The extrapolation error is stated in words on the first screen, before what to run next and tables.
    m = re.search(r"Held out the largest size \(N = 7e\+06\).*?mean signed error ([+-]\d+\.\d+)%", text)
    assert m is not None, text[:2000]
    assert text.index("Held out the largest size") < text.index("What to run next") < text.index("<h2>Warnings")
    assert abs(float(m.group(1))) < 50
    # Exponents with intervals in a table.
    exps = text[text.index("Fitted exponents") : text.index("</table>", text.index("Fitted exponents"))]
    for name in ("alpha", "beta", "a"):
        assert f"<td>{name}</td>" in exps
    assert re.search(r"<td>alpha</td><td>[0-9.]+</td><td>\[[0-9.e+-]+, [0-9.e+-]+\]</td>", exps)
    names = set(re.findall(r'<img alt="([^"]+)"', text))
    assert {"loss_vs_n", "loss_vs_d", "downstream", "training_curves", "design_map"} <= names
    assert ("seed_spread" in names) == (seeds > 1)
    assert "NaN loss at step 4000" in text  # failed cell listed with its reason
    fails = text[text.index("Failed or excluded") :]
    assert "m3-d3e6-s0" not in fails[: fails.index("</table>")]  # a planned cell is not a failure
    assert re.search(r"<td>m3-d3e6-s0</td>.*?<td>planned</td>", text)  # it is listed as planned
    assert "single_seed" in text if seeds == 1 else "single_seed" not in text
    # Downstream table: adapter-only rows carry their model's N; the Hough row is there too.
    at = text.index("Downstream metrics (mean")
    down = text[at : text.index("</table>", at)]
    assert re.search(r"<td>adapter_only</td><td>7e\+06</td>", down)
    assert "<td>hough</td>" in down


def test_tiny_study_figures_show_bands_baselines_and_cells(study) -> None:
    seeds, res, _ = study
    f = res.figures
    for name in ("loss_vs_n", "loss_vs_d"):
        leg = _legend(f[name])
        assert "95% CI (wild cluster bootstrap" in leg
        assert len(f[name].axes[0].collections) >= 6  # 3 scatter + 3 band polygons
    assert "D = " in _legend(f["loss_vs_n"])
    down = f["downstream"]
    titles = [ax.get_title() for ax in down.axes]
    assert {"tracking: ari", "tracking: efficiency"} <= set(titles)
    ari = down.axes[titles.index("tracking: ari")]
    leg = " | ".join(t.get_text() for t in ari.get_legend().get_texts())
    for label in ("FM (largest D) ± seed sd", "adapter only", "Hough (classical)", "random embedding"):
        assert label in leg
    hough = [ln for ln in ari.get_lines() if "Hough" in str(ln.get_label())]
    assert len(hough) == 1
    assert np.allclose(hough[0].get_ydata(), 0.8)
    tc = f["training_curves"]
    assert len(tc.axes) == 3  # one panel per size
    assert sum(len(ax.get_lines()) for ax in tc.axes) == 9 * seeds
    marked = sum(len(c.get_offsets()) for ax in tc.axes for c in ax.collections)
    assert marked == 9 * seeds  # the point used in the fit, once per run
    dm = _legend(f["design_map"])
    for label in ("failed", "planned / running", "completed", "compute-optimal ridge", "iso-FLOP"):
        assert label in dm
