"""Property-based tests (Hypothesis) of the math and the cache key, and a fuzz run of the archive parsers."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tinycifar
from cifarcli.data import read_cifar10
from cifarcli.errors import CifarError
from cifarcli.model import compute_cost, compute_gradients, evaluate_classifier, softmax
from cifarcli.store import artifact_key
from numeric import naive_gradients

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 8)), elements=finite))
def test_softmax_columns_sum_to_one_for_any_finite_scores(S):
    P = softmax(S)
    assert not np.isnan(P).any()
    assert ((P >= 0) & (P <= 1)).all()
    np.testing.assert_allclose(P.sum(axis=0), 1.0, rtol=1e-12)
    assert (P[np.argmax(S, axis=0), np.arange(S.shape[1])] == P.max(axis=0)).all()  # order is kept


@st.composite
def problems(draw, magnitude=1e3):
    K, d, n = draw(st.integers(2, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    values = st.floats(-magnitude, magnitude, allow_nan=False, width=64)
    X = draw(arrays(np.float64, (d, n), elements=values))
    W = draw(arrays(np.float64, (K, d), elements=values))
    b = draw(arrays(np.float64, (K, 1), elements=values))
    y = np.array(draw(st.lists(st.integers(0, K - 1), min_size=n, max_size=n)))
    lam = draw(st.floats(0, 10))
    return X, y, W, b, lam


@given(problems())
def test_cost_is_finite_for_large_finite_inputs(problem):
    X, y, W, b, lam = problem
    Y = np.eye(W.shape[0])[:, y]
    assert np.isfinite(compute_cost(X, Y, W, b, lam))


@settings(max_examples=60, deadline=None)
@given(problems(magnitude=2.0))
def test_analytic_gradients_match_plain_finite_differences(problem):
    X, y, W, b, lam = problem
    K = W.shape[0]
    Y = np.eye(K)[:, y]
    gW, gb = compute_gradients(X, Y, evaluate_classifier(X, W, b), W, lam)
    nW, nb = naive_gradients(X, Y, W, b, lam)  # a plain loop over parameters, independent of gradcheck.py
    np.testing.assert_allclose(gW, nW, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gb, nb, rtol=1e-5, atol=1e-7)


json_scalars = st.one_of(
    st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8), st.booleans()
)
param_dicts = st.dictionaries(st.text(min_size=1, max_size=6), json_scalars, min_size=1, max_size=6)


@settings(max_examples=100)
@given(param_dicts, st.data())
def test_key_changes_when_any_parameter_changes(params, data):
    base = artifact_key("train", 1, params, {"dataset": "d"})
    name = data.draw(st.sampled_from(sorted(params)))
    changed = data.draw(json_scalars.filter(lambda v: json.dumps(v) != json.dumps(params[name])))
    assert artifact_key("train", 1, {**params, name: changed}, {"dataset": "d"}) != base


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(param_dicts, min_size=1, max_size=20))
def test_key_is_stable_across_processes(many):
    code = (
        "import json, sys; from cifarcli.store import artifact_key; "
        "print(json.dumps([artifact_key('train', 1, p, {'dataset': 'd'}) for p in json.load(sys.stdin)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(many), capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == [artifact_key("train", 1, p, {"dataset": "d"}) for p in many]


# -- fuzz --------------------------------------------------------------------------


def _tar_bytes(members: dict[str, bytes], folder: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _mutate(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        action = rng.random()
        at = rng.randrange(len(data))
        if action < 0.6:
            data[at] = rng.randrange(256)
        elif action < 0.8:
            del data[at : at + rng.randint(1, 600)]
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(data)


@pytest.mark.parametrize("layout, compressed", [("binary", False), ("python", False), ("binary", True)])
def test_fuzzed_archives_load_or_fail_with_our_error(tmp_path, layout, compressed):
    """Random byte mutations of a valid archive: plain tar (so the structure is reachable) and gzip."""
    import gzip

    members = (tinycifar.binary_members if layout == "binary" else tinycifar.python_members)(n_per_batch=20, n_test=20)
    original = _tar_bytes(members, f"cifar-10-batches-{'bin' if layout == 'binary' else 'py'}")
    if compressed:
        original = gzip.compress(original, mtime=0)
    rng = random.Random(1234)
    outcomes = {"loaded": 0, "rejected": 0}
    for i in range(150):
        path = tmp_path / f"m{i}.tar"
        path.write_bytes(_mutate(original, rng))
        try:
            dataset, _ = read_cifar10(path)
        except CifarError:
            outcomes["rejected"] += 1
        else:  # whatever loads must be valid data
            assert dataset.train_x.dtype == np.uint8 and dataset.train_x.shape[1] == 3072
            assert int(dataset.train_y.max()) <= 9 and len(dataset.label_names) == 10
            outcomes["loaded"] += 1
        path.unlink()
    assert outcomes["rejected"] > 0 and sum(outcomes.values()) == 150
