"""Issue 18: everything a job would reject is rejected by ``plan`` — one line, exit 2, nothing written;
the budget is enforced by ``submit`` as by ``plan``; ``score-tracks`` ids are exact."""

from __future__ import annotations

import gzip
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from doubles import standin_cell
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fm4npp.cli.main import main
from fm4npp.config import load_dataclass
from fm4npp.errors import ConfigError, DataError
from fm4npp.eval import scoring
from fm4npp.eval.scoring import score_tracks
from fm4npp.sweep.spec import SweepSpec, load_sweep

_STUDY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

FAST = {"steps": 2, "step_s": 0.01, "checkpoint_every": 1}


def _sweep(tmp_path: Path, extra: str = "", body: str | None = None) -> Path:
    p = tmp_path / "s.yaml"
    head = f"study: s\nmodels: [q1]\ndatasets: [qd1]\nresults_dir: {tmp_path / 'results'}\n"
    p.write_text(body if body is not None else head + extra)
    return p


def _refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    got = main(argv)
    err = capsys.readouterr().err
    assert got == code, err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "results").exists()
    return err


BAD_VALUES = {
    "epochs_nan": ("train: {epochs: .nan}\n", "train.epochs"),
    "epochs_inf": ("train: {epochs: .inf}\n", "train.epochs"),
    "lr_string_nan": ("train: {lr: nan}\n", "train.lr"),
    "int_beyond_int64": ("seeds: [99999999999999999999999]\n", "seeds"),
    "seed_beyond_int32": ("seeds: [4294967296]\n", "seed"),
    "negative_seed": ("seeds: [-1]\n", "seed"),
    "duplicate_seeds": ("seeds: [1, 1]\n", "duplicate"),
    "dropout": ("train: {dropout: 5}\n", "train.dropout"),
    "beta1": ("train: {beta1: 2}\n", "train.beta1"),
    "clip_nan": ("train: {clip_grad_norm: .nan}\n", "train.clip_grad_norm"),
    "clip_negative": ("train: {clip_grad_norm: -1}\n", "train.clip_grad_norm"),
    "weight_decay_negative": ("train: {weight_decay: -0.1}\n", "train.weight_decay"),
    "threads_negative": ("train: {threads: -2}\n", "train.threads"),
    "eval_epochs_0": ("eval: {epochs: 0}\n", "eval.epochs"),
    "workers_0": ("data: {workers: 0}\n", "data.workers"),
    "eval_batch_0": ("eval: {batch_events: 0}\n", "eval.batch_events"),
    "n_queries_0": ("eval: {n_queries: 0}\n", "eval.n_queries"),
    "eval_duplicate_seeds": ("eval: {seeds: [0, 0]}\n", "eval.seeds"),
    "eval_negative_seed": ("eval: {seeds: [-3]}\n", "eval.seeds"),
    "empty_tasks": ("eval: {tasks: []}\n", "eval.tasks"),
    "val_events_huge": ("data: {val_events: 1.0e+30}\n", "val_events"),
    "val_events_1e9": ("data: {val_events: 1000000000}\n", "val_events"),
    "budget_nan": ("budget: {max_node_hours: .nan}\n", "max_node_hours"),
    "budget_inf": ("budget: {max_node_hours: .inf}\n", "max_node_hours"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_plan_rejects_what_a_job_would_reject(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    extra, key = BAD_VALUES[case]
    err = _refused(tmp_path, capsys, ["plan", str(_sweep(tmp_path, extra))])
    assert key in err


def test_plan_json_never_prints_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(_sweep(tmp_path)), "--json", "--no-catalog"]) == 0
    out = capsys.readouterr().out
    json.loads(out, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01\x02\x03\xff\xfe\xfd garbage",  # binary
        "study: s\nmodels: [q1]\ndescription: caf\xe9\n".encode("latin-1"),  # not UTF-8
        b"study: s\nmodels: [q1\n",  # malformed
        b"- a\n- b\n",  # not a mapping
    ],
)
def test_bad_sweep_files_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    p = tmp_path / "s.yaml"
    p.write_bytes(content)
    _refused(tmp_path, capsys, ["plan", str(p)])


def test_alias_bomb_is_refused_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    body = "\n".join(lines) + "\nstudy: s\nmodels: [q1]\ndatasets: [qd1]\nseeds: *a8\n"
    p = _sweep(tmp_path, body=body)
    t0 = time.perf_counter()
    err = _refused(tmp_path, capsys, ["plan", str(p)])
    assert time.perf_counter() - t0 < 5.0
    assert "alias" in err


def test_oversized_sweep_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _sweep(tmp_path, "description: " + "x" * (2 << 20) + "\n")
    assert "bytes" in _refused(tmp_path, capsys, ["plan", str(p)])


@pytest.mark.parametrize(
    "override", ["train.lr=[1, 2", "train.lr={", "train..lr=1", "train.lr=*x", "=3", "train.epochs=.nan"]
)
def test_bad_set_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str) -> None:
    _refused(tmp_path, capsys, ["plan", str(_sweep(tmp_path)), "--set", override])


def test_submit_enforces_the_budget_like_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # should the budget check let it through, the stand-in runs, never the real trainer
    monkeypatch.setattr("fm4npp.sweep.submit.REAL_CELL", standin_cell(**FAST))
    p = _sweep(tmp_path, "budget: {max_node_hours: 1.0e-9}\n")
    err = _refused(tmp_path, capsys, ["submit", str(p), "--no-wait"], code=3)
    assert "--allow-over-budget" in err
    _refused(tmp_path, capsys, ["submit", str(p), "--dry-run"], code=3)
    assert main(["submit", str(p), "--dry-run", "--allow-over-budget"]) == 0


@pytest.mark.slow
def test_new_study_without_prior_plan_gets_its_dataset(tmp_path: Path) -> None:
    """`submit` on a new study (no `plan` before) generates its events instead of exit 4."""
    from fm4npp.sweep.dataset import ensure_dataset
    from fm4npp.sweep.plan import plan_file

    plan = plan_file(_sweep(tmp_path, "data: {val_events: 8, test_events: 8}\neval: {enabled: false}\n"))
    assert not plan.study_dir.exists()
    ensure_dataset(plan, progress=False)
    assert any((plan.study_dir / "data").glob("*.parquet"))


# -- score-tracks ------------------------------------------------------------------------------------


def _score_files(tmp_path: Path, pid: list[int], primary: object = None) -> tuple[Path, Path, Path]:
    n = len(pid)
    hits = pd.DataFrame({"event_id": 0, "hit_id": np.arange(n), "particle_id": np.array(pid, np.int64)})
    tracks = pd.DataFrame({"event_id": 0, "hit_id": np.arange(n), "track_id": np.repeat([0, 1], n // 2)})
    parts = pd.DataFrame(
        {"event_id": 0, "particle_id": np.unique(np.array(pid, np.int64)), "pt": 1.0, "eta": 0.0}
    )
    if primary is not None:
        parts["primary"] = primary
    out = []
    for name, df in (("hits", hits), ("tracks", tracks), ("particles", parts)):
        path = tmp_path / f"{name}.csv"
        df.to_csv(path, index=False)
        out.append(path)
    return out[0], out[1], out[2]


def test_particle_ids_beyond_2_53_are_not_merged(tmp_path: Path) -> None:
    big = 2**60
    h, t, p = _score_files(tmp_path, [big] * 6 + [big + 1] * 6)  # two particles 1 apart
    metrics = score_tracks(h, t, p)
    assert metrics["n_particles"] == 2
    assert metrics["efficiency"] == 1.0


def test_primary_column_of_strings_is_one_line(tmp_path: Path) -> None:
    h, t, p = _score_files(tmp_path, [1] * 6 + [2] * 6, primary=["yes", "no"])
    with pytest.raises(DataError, match="primary") as err:
        score_tracks(h, t, p)
    assert "\n" not in str(err.value)


def test_csv_gz_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scoring, "MAX_TABLE_BYTES", 1 << 20)  # the real limit is 1 GiB
    h, t, _ = _score_files(tmp_path, [1] * 6 + [2] * 6)
    bomb = tmp_path / "hits.csv.gz"
    with gzip.open(bomb, "wb") as fh:
        fh.write(h.read_bytes())
        fh.write(b"0,0,0\n" * (1 << 19))  # 3 MiB of rows from a few KiB
    assert bomb.stat().st_size < 64 << 10
    with pytest.raises(DataError, match="larger than") as err:
        score_tracks(bomb, t)
    assert "\n" not in str(err.value)


# -- property-based: the sweep loader never fails with anything but a one-line ConfigError -----------

_SWEEP_KEYS = ("study", "models", "datasets", "seeds", "cluster", "qos", "results_dir", "gpus", "budget",
               "data", "train", "eval", "description")  # fmt: skip
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(_SWEEP_KEYS), value=_VALUES)
def test_fuzz_sweep_loader_any_value(key: str, value: object) -> None:
    """Random values in every sweep field: a valid spec or a one-line ConfigError, nothing else."""
    doc: dict[str, object] = {"study": "s", "models": ["q1"], "datasets": ["qd1"], key: value}
    try:
        spec = load_dataclass(SweepSpec, doc, "sweep.yaml")
    except ConfigError as err:
        assert "\n" not in str(err)  # noqa: PT017
        return
    assert _STUDY.fullmatch(spec.study)
    assert all(math.isfinite(x) for x in _numbers(spec))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_fuzz_sweep_file_bytes(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    """Random bytes as the sweep file: ConfigError (one line) or a valid spec."""
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_bytes(content)
    try:
        load_sweep(path)
    except ConfigError as err:
        assert "\n" not in str(err)  # noqa: PT017


def _numbers(obj: object) -> list[float]:
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [x for f in dataclasses.fields(obj) for x in _numbers(getattr(obj, f.name))]
    if isinstance(obj, (list, tuple)):
        return [x for v in obj for x in _numbers(v)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return [float(obj)]
    return []
