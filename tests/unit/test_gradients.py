"""parity.gradients: the complex convention (measured on both frameworks, on hand-computable
cases), the adjoint graph, the job-side gradient computation; the sides' gradient methods."""
import numpy as np
import pytest

from parity import gradients as G
from parity.stages import STAGES

GRAPH = tuple((s.name, tuple(s.inputs)) for s in STAGES)
RNG = np.random.default_rng(3)
Z = RNG.normal(size=5) + 1j * RNG.normal(size=5)
A = RNG.normal(size=5) + 1j * RNG.normal(size=5)


# ----------------------------------------------------------------------------- convention
def test_backward_convention_conversion_is_a_conjugate_for_the_other_form():
    g = np.array([1 + 2j, -3 - 0.5j])
    assert np.array_equal(G.to_canonical(g, "dx+idy"), g)
    assert np.array_equal(G.to_canonical(g, "dx-idy"), np.conj(g))
    assert np.array_equal(G.from_canonical(G.to_canonical(g, "dx-idy"), "dx-idy"), g)
    real = np.array([1.0, -2.0])
    assert np.array_equal(G.to_canonical(real, "dx-idy"), real)
    with pytest.raises(ValueError, match="expected one of"):
        G.to_canonical(g, "wirtinger")


def test_backward_convention_of_tensorflow_by_hand():
    tf = pytest.importorskip("tensorflow")
    from parity.sides.reference_tf import ReferenceTF

    z = tf.constant(Z)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        l1 = tf.reduce_sum(tf.abs(z) ** 2)
        l2 = tf.reduce_sum(tf.math.real(tf.constant(A) * z))
    conv = ReferenceTF.complex_gradient
    # L = sum x^2 + y^2: dL/dx + i dL/dy = 2z;  L = sum Re(a z) = ar x - ai y: -> conj(a)
    np.testing.assert_allclose(G.to_canonical(tape.gradient(l1, z).numpy(), conv), 2 * Z, rtol=1e-14)
    np.testing.assert_allclose(G.to_canonical(tape.gradient(l2, z).numpy(), conv), np.conj(A), rtol=1e-14)


def test_backward_convention_of_torch_by_hand():
    torch = pytest.importorskip("torch")
    from parity.sides.torch_impl import TorchImpl

    conv = TorchImpl.complex_gradient
    z = torch.tensor(Z, requires_grad=True)
    (g1,) = torch.autograd.grad((z.abs() ** 2).sum(), z)
    (g2,) = torch.autograd.grad((torch.as_tensor(A) * z).real.sum(), z)
    np.testing.assert_allclose(G.to_canonical(g1.resolve_conj().numpy(), conv), 2 * Z, rtol=1e-14)
    np.testing.assert_allclose(G.to_canonical(g2.resolve_conj().numpy(), conv), np.conj(A), rtol=1e-14)


@pytest.fixture(scope="module")
def n64_g1():
    from parity import cases

    case = cases.get_case("n64_g1")
    return cases.prepare(case)


@pytest.mark.parametrize("side_name", ["reference_tf", "torch_impl"])
def test_backward_stage_vjp_of_a_complex_stage_matches_the_hand_formula(side_name, n64_g1):
    """object_patches = A e^{i phi}; with output cotangent c (dx+idy form):
    dL/dA = Re(conj(c) e^{i phi}), dL/dphi = Re(conj(c) i A e^{i phi})."""
    from parity.sides import get_side

    config, weights, _ = n64_g1
    side = get_side(side_name)
    model = side.build(config, weights, "float64", "cpu")
    rng = np.random.default_rng(0)
    shape = (1, 1, 64, 64)
    amp, phase = rng.uniform(0.1, 2, shape), rng.uniform(-3, 3, shape)
    c = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    ins, ws = side.stage_vjp(model, "object_patches", {"amp": amp, "phase": phase},
                             G.from_canonical(c, side.complex_gradient))
    e = np.exp(1j * phase)
    np.testing.assert_allclose(G.to_canonical(ins["amp"], side.complex_gradient), np.real(np.conj(c) * e), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(G.to_canonical(ins["phase"], side.complex_gradient),
                               np.real(np.conj(c) * 1j * amp * e), rtol=1e-12, atol=1e-12)
    assert ws == {}  # the stage owns no weight


# ----------------------------------------------------------------------------- adjoint graph
def test_backward_adjoint_order_is_reverse_pipeline_order_of_the_loss_ancestors():
    order = G.adjoint_order(GRAPH, "loss_nll")
    assert order[0] == "loss_nll" and order[1] == "pred_intensity" and order[-1] == "input_scaled"
    assert "trimmed_object" not in order and "loss_mae" not in order and "probe" in order
    mae = G.adjoint_order(GRAPH, "loss_mae")
    assert mae[:2] == ("loss_mae", "pred_amp") and "pred_intensity" not in mae
    users = G.consumers(GRAPH, order)
    assert users["canvas"] == ("extracted_patches",)  # trimmed_object is not on the loss's path
    assert set(users["latent"]) == {"amp", "phase"}
    with pytest.raises(ValueError, match="unknown loss stage"):
        G.adjoint_order(GRAPH, "loss_l2")


def test_backward_keys_round_trip():
    flat = {G.key("loss_nll", "stage", "canvas"): np.ones(2), G.key("loss_nll", "weight", "a.b.kernel"): np.zeros(1)}
    s = G.split(flat)
    assert set(s["loss_nll"]) == {"stage", "weight"} and "a.b.kernel" in s["loss_nll"]["weight"]
    with pytest.raises(ValueError):
        G.key("loss_nll", "bogus", "x")


class _LinearSide:
    """A hand-made side: stages y = 2x (x = input_scaled stand-in), loss = sum y; one weight."""

    name = "linear"
    complex_gradient = "dx+idy"

    def __init__(self, detach=False):
        self.detach = detach

    def gradients(self, model, inputs, loss):
        x = inputs["diffraction"]
        sg = {"loss_nll": np.array(1.0), "y": np.ones_like(x)}
        if not self.detach:
            sg["x"] = 2 * np.ones_like(x)
        return sg, {"w": np.array([7.0])}, {"x": x, "y": 2 * x, "loss_nll": np.array((2 * x).sum())}

    def stage_vjp(self, model, name, env, cotangent):
        if name == "y":
            return {"x": (0.0 if self.detach else 2.0) * np.asarray(cotangent)}, {"w": np.array([1.0])}
        if name == "loss_nll":
            return {"y": np.ones_like(env["y"]) * cotangent}, {}
        return {}, {}


def test_backward_compute_fills_unreached_stages_with_zeros_and_sums_local_cotangents():
    graph = (("x", ("diffraction",)), ("y", ("x",)), ("loss_nll", ("y",)))
    x = np.arange(3.0)
    stages = {"x": x, "y": 2 * x, "loss_nll": np.array(6.0)}
    ref, _ = G.compute(_LinearSide(), None, inputs={"diffraction": x}, stages=stages, graph=graph,
                       losses=["loss_nll"], weights={"w": np.zeros(1)}, dtype="float64")
    assert np.array_equal(ref["loss_nll/stage/x"], 2 * np.ones(3))
    cand, errors = G.compute(_LinearSide(detach=True), None, inputs={"diffraction": x}, stages=stages, graph=graph,
                             losses=["loss_nll"], weights={"w": np.zeros(1)}, dtype="float64", teacher_gradients=ref)
    assert not errors
    assert np.array_equal(cand["loss_nll/stage/x"], np.zeros(3))  # not reached: zero, never missing
    assert np.array_equal(cand["loss_nll/local/y"], np.ones(3))  # the loss's VJP fed the reference's 1
    assert np.array_equal(cand["loss_nll/local/x"], np.zeros(3))  # the detached stage: root cause at grad:x
    assert np.array_equal(cand["loss_nll/local_weight/w"], np.array([1.0]))


def test_backward_nonfinite_counts_in_order():
    arrays = {"a": np.array([1.0, np.nan]), "b": np.array([np.inf, np.nan, 1.0]), "c": np.ones(2)}
    assert G.nonfinite_counts(arrays, ["b", "a", "c"]) == {"b": 2, "a": 1}
