"""The backward-parity suite: `pytest tests/parity -k backward`.

Per case of the suite: the gradients of both losses with respect to every stage (the adjoint
stages, compared in reverse pipeline order) and every weight agree between the sides with the
tolerance table, in the case's dtype and in float64; and a golden check of the reference's own
gradient statistics, so a change of the reference's gradients is caught even when the port
follows it. Narrow with e.g. `-k "backward and n64_g2"`; accept an intended change of the
reference with `pytest tests/parity -k backward --force-regen` (docs/backward.md).
"""
import fcntl
import json

import numpy as np
import pytest

from parity import gradients as G
from parity.stages import Stage

from .goldens import golden_arrays

ACCEPT = ("If the reference's gradients changed on purpose (e.g. a TensorFlow upgrade), accept it with "
          "`pytest tests/parity -k backward --force-regen` and commit the regenerated goldens.")


class BackwardCache:
    """One backward run per (case, dtype) per session, shared between xdist workers by files:
    the BackwardResult's JSON and the reference's gradients."""

    def __init__(self, root, pair):
        self.root = root / pair.name.replace(":", "-")
        self.root.mkdir(parents=True, exist_ok=True)
        self.pair = pair
        self._memory = {}

    def get(self, name, dtype=None):
        key = name if dtype is None else f"{name}@{dtype}"
        if key not in self._memory:
            folder = self.root / key
            folder.mkdir(exist_ok=True)
            with open(self.root / f"{key}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                done = folder / "backward.json"
                if not done.exists():
                    from parity.run import run_case

                    # workers: TensorFlow's and torch's thread pools in one process slow a backward
                    # run (eager tape, one VJP per stage) several times over
                    run = run_case(name, dtype=dtype, pair=self.pair, task="backward", tolerance_mode="table",
                                   isolation="workers")
                    if run.backward.available:
                        np.savez(folder / "reference_gradients.npz", **run.gradients["reference"])
                    tmp = folder / "backward.json.partial"
                    tmp.write_text(json.dumps(_summary(run.backward)))
                    tmp.replace(done)
                summary = json.loads(done.read_text())
                grads = None
                if (folder / "reference_gradients.npz").exists():
                    with np.load(folder / "reference_gradients.npz") as data:
                        grads = {k: data[k] for k in data.files}
            self._memory[key] = (summary, grads)
        return self._memory[key]


def _summary(b):
    out = {"verdict": b.verdict, "available": b.available, "reason": b.reason, "summary": b.summary(), "losses": {}}
    for loss, lb in b.losses.items():
        out["losses"][loss] = {
            "verdict": lb.verdict, "adjoint": [s.name for s in lb.adjoint.stages],
            "weights": [s.name for s in lb.weights.stages],
            "first_divergent_stage": lb.adjoint.first_divergent_stage,
            "first_divergent_weight": lb.weights.first_divergent_stage,
            "worst_margin": max([s.margin for s in lb.adjoint.stages + lb.weights.stages if s.margin is not None] + [0.0]),
            "messages": [s.message for s in lb.adjoint.stages + lb.weights.stages if not s],
        }
    return out


@pytest.fixture(scope="session")
def backward_cache(tmp_path_factory, worker_id, pair):
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base
    return BackwardCache(shared / "parity-backward-cache", pair)


def _unavailable_is_declared(summary, pair):
    """A pair whose backward is not available: a side of it declares no gradient support, and the
    reason given is that side's."""
    from parity.sides import side_class

    lacking = [side_class(s) for s in (pair.reference, pair.candidate) if not side_class(s).supports_gradients]
    if not lacking:
        pytest.fail(f"backward not available although both sides support gradients: {summary['reason']}",
                    pytrace=False)
    assert any(cls.gradients_unavailable in summary["reason"] for cls in lacking), summary["reason"]


def _check(summary, label):
    if not summary["available"]:
        pytest.fail(f"{label}: backward not available: {summary['reason']}", pytrace=False)
    failing = [m for lb in summary["losses"].values() for m in lb["messages"]]
    if summary["verdict"] != "pass":
        pytest.fail(f"{summary['summary']}\n\n" + "\n\n".join(failing), pytrace=False)


def test_backward_case(backward_cache, case_name, pair):
    summary, _ = backward_cache.get(case_name)
    if not summary["available"]:
        return _unavailable_is_declared(summary, pair)
    graph = pair.graph
    assert set(summary["losses"]) == set(G.default_losses(graph))
    for loss, lb in summary["losses"].items():
        assert lb["adjoint"] == [G.adjoint_name(s) for s in G.adjoint_order(graph, loss)]
        assert lb["weights"], "no weight gradient was compared"
    _check(summary, case_name)


def test_backward_float64(backward_cache, case_name, pair):
    """The same case in float64: every gradient agrees to the float64 backward table."""
    summary, _ = backward_cache.get(case_name, "float64")
    if not summary["available"]:
        return _unavailable_is_declared(summary, pair)
    _check(summary, f"{case_name}@float64")
    for lb in summary["losses"].values():
        assert lb["worst_margin"] <= 1.0


def _golden_stages(pair, grads):
    """Stages of golden_arrays for the reference's gradients: per loss, every adjoint stage (its
    canonical shape, so patch-shaped ones get per-patch statistics) and every weight."""
    split = G.split(grads)
    data, stages = {}, []
    for loss in G.default_losses(pair.graph):
        for name in G.adjoint_order(pair.graph, loss):
            st = pair.stage_list.get(name)
            key = f"{loss}.d.{name}"
            stages.append(Stage(key, st.shape, st.complex, (), ""))
            data[key] = split[loss]["stage"][name]
        for name, w in split[loss]["weight"].items():
            key = f"{loss}.d.{name}"
            stages.append(Stage(key, tuple(f"w{i}" for i in range(w.ndim)), False, (), ""))
            data[key] = w
    return data, stages


def test_backward_golden(backward_cache, case_name, ndarrays_regression, pair):
    summary, grads = backward_cache.get(case_name)
    if grads is None:
        from parity.sides import side_class

        if side_class(pair.reference).supports_gradients:
            pytest.fail(f"{case_name}: the reference computed no gradients: {summary['reason']}", pytrace=False)
        return _unavailable_is_declared(summary, pair)  # no gradient of the reference: nothing to keep
    data, stages = _golden_stages(pair, grads)
    arrays, tolerances = golden_arrays(data, stages)
    basename = f"golden_{case_name}" if pair.name in ("builtin", "reference_tf:torch_impl") else \
        f"golden_{pair.name.replace(':', '-')}_{case_name}"
    try:
        ndarrays_regression.check(arrays, basename=basename, tolerances=tolerances)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{ACCEPT}") from None
