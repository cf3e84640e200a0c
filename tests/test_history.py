"""What makes a released version the same release: the model and its fitted state by content."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import skops.io
from nb2prod.pipeline.history import fitted_fingerprint, model_fingerprint
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

X = np.random.default_rng(0).normal(size=(60, 3))
Y = (X[:, 0] > 0).astype(int)


def save(obj: object, path: Path) -> tuple[Path, str]:
    skops.io.dump(obj, path)
    return path, "skops"


def test_a_skops_model_saved_twice_has_one_fingerprint(tmp_path: Path) -> None:
    model = LogisticRegression().fit(X, Y)
    first = save(model, tmp_path / "a.skops")
    time.sleep(1.1)  # zip timestamps have a resolution of two seconds at most
    second = save(LogisticRegression().fit(X, Y), tmp_path / "b.skops")
    other = save(LogisticRegression(C=0.01).fit(X, Y), tmp_path / "c.skops")
    assert model_fingerprint(*first) == model_fingerprint(*second)
    assert model_fingerprint(*first) != model_fingerprint(*other)


def test_fitted_state_is_part_of_the_fingerprint(tmp_path: Path) -> None:
    model = save(LogisticRegression().fit(X, Y), tmp_path / "m.skops")
    scaler = save(StandardScaler().fit(X), tmp_path / "s.skops")
    refitted = save(StandardScaler().fit(X * 2), tmp_path / "t.skops")
    alone = fitted_fingerprint(model, ())
    assert alone == model_fingerprint(*model)  # releases without fitted state keep theirs
    with_scaler = fitted_fingerprint(model, [("scaler", *scaler)])
    assert with_scaler != alone
    assert fitted_fingerprint(model, [("scaler", *refitted)]) != with_scaler
    assert fitted_fingerprint(model, [("other", *scaler)]) != with_scaler
    again = save(StandardScaler().fit(X), tmp_path / "u.skops")
    assert fitted_fingerprint(model, [("scaler", *again)]) == with_scaler
