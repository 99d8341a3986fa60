"""Run recipes (fm4npp.model.recipe) and how `plan` resolves them: file keys win, "unset" = absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from fm4npp.cli.main import main
from fm4npp.errors import ConfigError
from fm4npp.model import ladder
from fm4npp.model.recipe import RECIPES, check_table, lr_for_n, recipe_for
from fm4npp.sweep.plan import make_plan
from fm4npp.sweep.spec import load_sweep

HITS = 830.0


def sweep(tmp_path: Path, train: str = "", extra: str = "", models: str = "[q1, q2, q3]") -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(
        f"study: s\nmodels: {models}\ndatasets: [qd1]\nresults_dir: {tmp_path / 'results'}\n"
        f"data: {{hits_per_event: {HITS}}}\ntrain: {{recipe: ladder{train}}}\n{extra}"
    )
    return p


def by_model(path: Path, overrides: list[str] | None = None) -> dict[str, object]:
    plan = make_plan(load_sweep(path, overrides))
    return {c.model: c for c in plan.cells}


def test_recipe_fills_lr_warmup_and_batch_in_hits(tmp_path: Path) -> None:
    cells = by_model(sweep(tmp_path))
    for model, cell in cells.items():
        r, t = recipe_for(model), cell.run.train  # type: ignore[attr-defined]
        assert t.lr == pytest.approx(r.lr)
        assert t.lr_min == pytest.approx(r.lr * r.lr_min_ratio)
        assert t.warmup_fraction == r.warmup_fraction
        assert t.batch_events == max(1, round(r.batch_hits / HITS))
        assert t.batch_events % t.micro_batch_events == 0
        assert cell.row()["batch_hits"] == t.batch_events * HITS  # type: ignore[attr-defined]
        assert cell.row()["recipe"] == r.source  # type: ignore[attr-defined]
    lrs = [cells[m].run.train.lr for m in ("q1", "q2", "q3")]  # type: ignore[attr-defined]
    assert lrs[0] > lrs[1] > lrs[2]  # per-size LR: larger rungs train at a lower peak


def test_a_file_key_wins_even_when_it_equals_the_default(tmp_path: Path) -> None:
    # 2e-4 is TrainConfig's default lr: only "present in the file" can tell it from unset
    cells = by_model(sweep(tmp_path, ", lr: 2.0e-4, batch_events: 8, micro_batch_events: 4"))
    for cell in cells.values():
        t = cell.run.train  # type: ignore[attr-defined]
        assert (t.lr, t.batch_events, t.micro_batch_events) == (2e-4, 8, 4)
        assert t.lr_min == pytest.approx(2e-5)  # the recipe's floor ratio × the file's LR
        assert cell.recipe == "file"  # type: ignore[attr-defined]


def test_set_override_counts_as_a_file_key(tmp_path: Path) -> None:
    cells = by_model(sweep(tmp_path), ["train.lr=0.001"])
    assert {c.run.train.lr for c in cells.values()} == {0.001}  # type: ignore[attr-defined]
    assert cells["q1"].run.train.batch_events == recipe_for("q1").batch_events(HITS)  # type: ignore[attr-defined]


def test_explicit_micro_batch_rounds_the_recipe_batch_up(tmp_path: Path) -> None:
    cells = by_model(sweep(tmp_path, ", micro_batch_events: 4"))  # the recipe's batch: 2 events
    t = cells["q1"].run.train  # type: ignore[attr-defined]
    assert t.micro_batch_events == 4
    assert t.batch_events == 4
    assert t.batch_events >= recipe_for("q1").batch_events(HITS)


def test_recipe_off_leaves_the_train_block_alone(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text(f"study: s\nmodels: [q1, q3]\ndatasets: [qd1]\nresults_dir: {tmp_path}\n")
    spec = load_sweep(p)
    assert spec.train.recipe == "none"
    assert all(c.run.train == spec.train and c.recipe == "none" for c in make_plan(spec).cells)


def test_lr_multipliers_add_an_lr_axis(tmp_path: Path) -> None:
    spec = load_sweep(sweep(tmp_path, extra="lr_multipliers: [0.5, 1, 2]", models="[q2]"))
    cells = make_plan(spec).cells
    base = recipe_for("q2").lr
    assert sorted(c.run.train.lr for c in cells) == pytest.approx([base / 2, base, 2 * base])
    assert all(c.run.train.lr_min == pytest.approx(c.run.train.lr * 0.1) for c in cells)
    assert len({c.cell_id for c in cells}) == 3


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("lr_multipliers: [1, 1]", "lr_multipliers: duplicate"),
        ("lr_multipliers: [0, 1]", "lr_multipliers: must list numbers > 0"),
        ("train_set: [lr]", "train_set is computed"),
    ],
)
def test_bad_sweep_keys_are_config_errors(tmp_path: Path, extra: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_sweep(sweep(tmp_path, extra=extra))


def test_explicit_lr_min_is_kept(tmp_path: Path) -> None:
    cells = by_model(sweep(tmp_path, ", lr_min: 1.0e-4"))
    assert {c.run.train.lr_min for c in cells.values()} == {1e-4}  # type: ignore[attr-defined]
    assert cells["q1"].run.train.lr == pytest.approx(recipe_for("q1").lr)  # type: ignore[attr-defined]


def test_recipe_table_and_law() -> None:
    check_table()
    assert RECIPES["m3"].lr == 2e-4  # SPEC §5.4
    assert RECIPES["m3"].batch_events(840) == 256
    ns = [ladder.n_params(ladder.get_rung(q)) for q in ("q1", "q1b", "q2", "q2b", "q3")]
    lrs = [lr_for_n(n) for n in ns]
    assert lrs == sorted(lrs, reverse=True)
    assert recipe_for("q2b").lr == pytest.approx(lr_for_n(ns[3]))
    with pytest.raises(ConfigError, match="unknown model"):
        recipe_for("q9")


def test_plan_table_shows_the_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(sweep(tmp_path)), "--no-catalog"]) == 0
    out = capsys.readouterr().out
    assert "from the run recipe: lr_for_n" in out
    assert f"{recipe_for('q1').lr:.3g}" in out
    assert "warm-up" in out
    assert f"{recipe_for('q1').warmup_fraction:.0%}" in out
