"""PID and noise-tagging metrics on hand-built labels (expected values worked out in comments)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import precision_score, recall_score

from fm4npp.eval.metrics_classify import confusion_matrix, noise_metrics, pid_metrics


def test_pid_confusion_accuracy_and_macro() -> None:
    # true:  π π π K K p e e  other
    # pred:  π π K K π p e π  other
    true = np.array([1, 1, 1, 2, 2, 3, 4, 4, 0])
    pred = np.array([1, 1, 2, 2, 1, 3, 4, 1, 0])
    m = pid_metrics(true, pred)
    # correct: π,π,K,p,e,other = 6 of 9
    assert m["accuracy"] == pytest.approx(6 / 9)
    cm = np.array(m["confusion"])
    assert cm[1].tolist() == [0, 2, 1, 0, 0]  # π → π twice, → K once
    assert cm[:, 1].tolist() == [0, 2, 1, 0, 1]  # predicted π: 2 π, 1 K, 1 e
    # precision: other 1, π 2/4, K 1/2, p 1, e 1 → mean 4/5
    # recall:    other 1, π 2/3, K 1/2, p 1, e 1/2 → mean (1+2/3+1/2+1+1/2)/5 = 11/15
    assert m["precision"] == pytest.approx(0.8)
    assert m["recall"] == pytest.approx(11 / 15)
    assert m["precision_per_class"] == pytest.approx([1, 0.5, 0.5, 1, 1])
    assert m["precision"] == pytest.approx(precision_score(true, pred, average="macro"))
    assert m["recall"] == pytest.approx(recall_score(true, pred, average="macro"))


def test_pid_valid_mask_and_never_predicted_class() -> None:
    # the masked point (a proton predicted as π) is ignored; class "p" then has neither truth nor
    # prediction and drops out of the macro mean; class K is never predicted → precision 0 in the mean
    true = np.array([1, 2, 3])
    pred = np.array([1, 1, 1])
    valid = np.array([True, True, False])
    m = pid_metrics(true, pred, valid=valid)
    assert m["n_points"] == 2
    assert m["accuracy"] == pytest.approx(0.5)
    # classes present: π, K. precision π 1/2, K 0 (undefined → 0) → 0.25; recall π 1, K 0 → 0.5
    assert m["precision"] == pytest.approx(0.25)
    assert m["recall"] == pytest.approx(0.5)
    assert np.isnan(m["precision_per_class"][2])  # per-class arrays keep NaN for 0/0


def test_pid_vs_pt_bins() -> None:
    # two π at 0.1 GeV (one right), one K at 1.1 GeV (right)
    true = np.array([1, 1, 2])
    pred = np.array([1, 2, 2])
    m = pid_metrics(true, pred, pt=np.array([0.1, 0.1, 1.1]))
    rec = np.array(m["recall_vs_pt"])
    assert rec.shape == (15, 5)
    assert rec[0, 1] == pytest.approx(0.5)  # bin 0–0.2 GeV: π recall 1/2
    assert rec[5, 2] == pytest.approx(1.0)  # bin 1.0–1.2 GeV: K recall 1
    assert np.isnan(rec[3]).all()


def test_noise_metrics() -> None:
    # true noise:  1 1 1 0 0 0 0 0 ; predicted: 1 1 0 1 0 0 0 0
    true = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    pred = np.array([1, 1, 0, 1, 0, 0, 0, 0], dtype=bool)
    m = noise_metrics(true, pred)
    assert m["accuracy"] == pytest.approx(6 / 8)
    # noise: precision 2/3, recall 2/3; signal: precision 4/5, recall 4/5
    assert m["precision_noise"] == pytest.approx(2 / 3)
    assert m["recall_noise"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert m["recall"] == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_bad_labels_raise() -> None:
    with pytest.raises(ValueError, match=r"0\.\.4"):
        confusion_matrix(np.array([5]), np.array([0]), 5)
    with pytest.raises(ValueError, match="shape"):
        pid_metrics(np.array([1, 2]), np.array([1]))
