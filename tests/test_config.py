"""Strict sweep-file loading: every user mistake is a one-line ConfigError naming file, key and values."""

from __future__ import annotations

from pathlib import Path

import pytest

from fm4npp.errors import ConfigError
from fm4npp.sweep.clusters import load_cluster
from fm4npp.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[1]
BASE = """study: s
models: [q1, q2, q3]
datasets: [qd1, qd2, qd3]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sweep.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["quickstart.yaml", "fm4npp-paper.yaml", "fm4npp-talk-2025.yaml"])
def test_shipped_sweeps_load(name: str) -> None:
    spec = load_sweep(REPO / "sweeps" / name)
    assert spec.models
    assert spec.datasets


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            BASE + "trian: {}\n",
            r"sweep.yaml: unknown key 'trian' \(did you mean 'train'\?\); allowed keys: .*train",
        ),
        (BASE + "train: {lr_mn: 1}\n", r"unknown key 'train.lr_mn' \(did you mean 'lr_min'\?\)"),
        (BASE + "train: {epochs: many}\n", r"train.epochs: expected a number, got 'many'"),
        (BASE + "train: {batch_events: 2.5}\n", r"train.batch_events: expected an integer"),
        (BASE + "train: {order: EPX}\n", r"train.order: 'EPX' is not allowed .*allowed: EPR"),
        (BASE + "budget: {max_node_hours: -1}\n", r"budget.max_node_hours must be > 0"),
        (BASE + "budget: {max_node_hours: 0}\n", r"budget.max_node_hours must be > 0"),
        (BASE + "train: {epochs: 0}\n", r"train.epochs must be > 0"),
        ("study: s\nmodels: [q1, m9]\ndatasets: [qd1]\n", r"models\[1\]: unknown model 'm9'.*allowed:"),
        ("study: s\nmodels: [q1]\ndatasets: [d10]\n", r"datasets\[0\]: unknown dataset 'd10'"),
        ("study: s\ndatasets: [qd1]\n", r"required key 'models' is missing"),
        ("study: s\nmodels: [q1, q1]\ndatasets: [qd1]\n", r"duplicate entries"),
        ("study: 'a b'\nmodels: [q1]\ndatasets: [qd1]\n", r"study: 'a b' must be"),
        ("- just\n- a list\n", r"expected a mapping at the top level"),
        ("study: [unclosed\n", r"invalid YAML \(line"),
    ],
)
def test_bad_sweeps(tmp_path: Path, text: str, pattern: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=pattern) as err:
        load_sweep(path)
    assert "\n" not in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_sweep(tmp_path / "nope.yaml")


def test_overrides_take_precedence(tmp_path: Path) -> None:
    spec = load_sweep(write(tmp_path, BASE + "train: {epochs: 2}\n"), ["train.epochs=3", "seeds=[1,2]"])
    assert spec.train.epochs == 3.0
    assert spec.seeds == (1, 2)


def test_scientific_notation_strings_are_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads 2e-4 (no dot) as a string; we accept it as a number.
    spec = load_sweep(write(tmp_path, BASE + "train: {lr: 2e-4, lr_min: 2e-5}\n"))
    assert spec.train.lr == pytest.approx(2e-4)


def test_cluster_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'perlmutter'"):
        load_cluster("perlmuter")
    bad = tmp_path / "mine.yaml"
    bad.write_text("kind: slurm\ngpus_per_node: 4\ngpu_type: h100\npeak_tflops: 989\ngpus_per_nod: 4\n")
    with pytest.raises(
        ConfigError, match=r"mine.yaml: unknown key 'gpus_per_nod' \(did you mean 'gpus_per_node'\?\)"
    ):
        load_cluster(str(bad))
    bad.write_text(
        "kind: slurm\ngpus_per_node: 4\ngpu_type: h100\npeak_tflops: 989\ndefault_qos: nope\n"
    )
    with pytest.raises(ConfigError, match="default_qos 'nope'"):
        load_cluster(str(bad))
