"""``data stats``: summary statistics on hand-made events and the validation table's pass/fail rules."""

from __future__ import annotations

import numpy as np
import pytest
from test_data_fastsim import table

from fm4npp.data.fastsim import SimConfig, simulate_particles
from fm4npp.data.schema import Event, make_hits
from fm4npp.data.stats import summarize
from fm4npp.data.validation import format_validation, validation_rows

EXACT = SimConfig(scattering=False, hit_efficiency=1.0, curler_mean=0.0, max_turns=3)


def _event(event_id: int, tab: dict) -> Event:
    hits, parts = simulate_particles(tab, EXACT, np.random.default_rng(event_id))
    hits.pop("event")
    parts.pop("event")
    return Event(event_id, hits, parts)


def _hand_events(n_hits: list[int]) -> list[Event]:
    """Events of ``n`` hits each: one track, every 4th hit noise, pid cycling, energy 1..n."""
    out = []
    for i, n in enumerate(n_hits):
        idx = np.arange(n)
        noise = idx % 4 == 0
        out.append(Event(i, make_hits(
            x=np.full(n, 40.0), y=np.zeros(n), z=np.zeros(n), energy=idx + 1.0,
            particle_id=np.where(noise, 2, 1), track_id=np.where(noise, 0, 1), noise=noise, pid=idx % 5,
        )))  # fmt: skip
    return out


def test_summary_of_hand_made_events() -> None:
    s = summarize(_hand_events([8, 4, 3300, 12]))
    assert s["n_events"] == 4
    assert s["hits_per_event_mean"] == pytest.approx((8 + 4 + 3300 + 12) / 4)
    assert s["events_above_3200"] == 1
    assert s["share_above_3200"] == 0.25
    # track 1 has 6, 3, 2475, 9 signal hits → ≥ 5 in three events
    assert s["tracks_ge5_per_event_mean"] == pytest.approx(3 / 4)
    assert s["noise_fraction"] == pytest.approx((2 + 1 + 825 + 3) / 3324)
    assert s["return_branch_share"] is None
    assert s["dndeta"] is None
    e = np.concatenate([np.arange(n) + 1.0 for n in (8, 4, 3300, 12)])
    assert s["energy_mean"] == pytest.approx(e.mean())
    assert s["energy_std"] == pytest.approx(e.std(), rel=1e-6)
    rows = {r["quantity"]: r for r in validation_rows(s)}
    assert rows["return-branch share of signal points"]["status"] == "n/a"
    assert rows["tracks with ≥ 5 points / event"]["status"] == "fail"


def test_return_branch_share_of_straight_tracks_and_loopers() -> None:
    stiff = _event(0, table(1.0))  # outgoing only
    assert summarize([stiff])["return_branch_share"] == 0.0
    looper = _event(1, table(0.12, eta=0.05))
    share = summarize([looper])["return_branch_share"]
    # 3 turns of a 0.12 GeV looper from the beam line: each turn crosses every reachable row out and back
    assert share == pytest.approx(0.5, abs=0.05)
    both = summarize([stiff, looper])
    n_s, n_l = stiff.n_hits, looper.n_hits
    assert both["return_branch_share"] == pytest.approx(share * n_l / (n_s + n_l))
    assert both["dndeta"] == pytest.approx(2 / 2 / 2.2)  # both primaries: pT 1 and 0.12 > 0.1 GeV/c
    by_origin = both["tracks_ge5_by_origin"]
    assert by_origin["primary"] == 1.0
    assert sum(by_origin.values()) == 1.0


def _summary(**kw: object) -> dict:
    base = {
        "hits_per_event_mean": 840.0,
        "hits_per_event_quantiles": {"0.1": 100.0, "0.5": 700.0, "0.9": 1500.0, "0.99": 3000.0},
        "share_above_3200": 0.008,
        "tracks_ge5_per_event_mean": 15.5,
        "noise_fraction": 0.24,
        "pid_fractions": {"other": 0.063, "pion": 0.59, "kaon": 0.043, "proton": 0.029, "electron": 0.27},
        "energy_mean": 253.1,
        "energy_std": 268.7,
        "return_branch_share": 0.14,
        "dndeta": 2.5,
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(("key", "value", "quantity", "status"), [
    ("hits_per_event_mean", 924.0, "points / event, mean", "pass"),
    ("hits_per_event_mean", 925.0, "points / event, mean", "fail"),
    ("hits_per_event_mean", 755.0, "points / event, mean", "fail"),
    ("tracks_ge5_per_event_mean", 13.0, "tracks with ≥ 5 points / event", "pass"),
    ("tracks_ge5_per_event_mean", 12.9, "tracks with ≥ 5 points / event", "fail"),
    ("tracks_ge5_per_event_mean", 18.1, "tracks with ≥ 5 points / event", "fail"),
    ("share_above_3200", 0.03, "share of events > 3,200 points", "fail"),
    ("energy_std", 300.0, "charge (E) std", "fail"),
    ("return_branch_share", 0.25, "return-branch share of signal points", "fail"),
    ("dndeta", None, "dN/dη charged primaries (|η| < 1.1, pT > 0.1)", "n/a"),
    ("noise_fraction", 0.28, "noise fraction of points", "pass"),
    ("noise_fraction", 0.20, "noise fraction of points", "pass"),
    ("noise_fraction", 0.281, "noise fraction of points", "fail"),
    ("noise_fraction", 0.11, "noise fraction of points", "fail"),
    ("pid_fractions", {"other": 0.063, "pion": 0.59, "kaon": 0.043, "proton": 0.029, "electron": 0.52},
     "PID fraction of points: electron", "fail"),
    ("pid_fractions", {"other": 0.081, "pion": 0.59, "kaon": 0.043, "proton": 0.029, "electron": 0.27},
     "PID fraction of points: other", "pass"),
    ("pid_fractions", {"other": 0.063, "pion": 0.59, "kaon": 0.043, "proton": 0.019, "electron": 0.27},
     "PID fraction of points: proton", "fail"),
])  # fmt: skip
def test_validation_pass_fail_rules(key: str, value: object, quantity: str, status: str) -> None:
    assert all(r["status"] in ("pass", "no ref") for r in validation_rows(_summary()))
    rows = {r["quantity"]: r for r in validation_rows(_summary(**{key: value}))}
    assert rows[quantity]["status"] == status


def test_format_validation_lists_every_row_and_counts() -> None:
    rows = validation_rows(_summary(tracks_ge5_per_event_mean=9.0))
    text = format_validation(rows)
    lines = text.splitlines()
    assert lines[0].startswith("| quantity")
    assert set(lines[1]) <= {"|", "-"}
    assert len(lines) == len(rows) + 3
    assert "| 9.00 " in text
    assert "fail" in text
    n_ref = sum(r["status"] == "no ref" for r in rows)
    assert lines[-1] == f"{len(rows) - n_ref - 1} pass, 1 fail, {n_ref} without a reference"
    assert {r["quantity"] for r in rows if r["status"] == "no ref"} >= {
        "points / event, median", "points / event, 10 %", "points / event, 90 %",
    }
    unverified = [r for r in rows if "unverified reference" in r["reference"]]
    assert {r["quantity"] for r in unverified} == {
        "noise fraction of points", *(f"PID fraction of points: {c}" for c in
                                      ("other", "pion", "kaon", "proton", "electron")),
    }
    assert all(r["status"] == "pass" for r in unverified)
