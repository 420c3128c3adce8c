"""Declared sides (parity.byo.TorchSide / KerasSide): the declaration checked at class creation,
weights and layouts at build and forward, teacher forcing through hooks, and the reasons a
stage cannot be forced."""
import numpy as np
import pytest

from parity import byo
from parity.byo import (NHWC, DeclarationError, LayoutError, NotForced, TapError, WeightMap, WeightMapError, derived,
                        function, layer, module, module_input, select, square)
from tests.helpers.byo_sides import KERAS_STAGES, NET_STAGES, NET_WEIGHTS, KerasNetSide, NetSide, build, net_inputs


def declare(base=byo.TorchSide, **attrs):
    attrs = {"name": "declared", "stage_list": NET_STAGES, "model": "tests.helpers.byo_models:Net", "inputs": ("x",),
             "taps": dict(NetSide.taps), "weights": NET_WEIGHTS, "__module__": __name__, **attrs}
    return type("Declared", (base,), attrs)


# ------------------------------------------------------------------ the declaration
def test_the_declaration_is_checked_when_the_class_is_created():
    with pytest.raises(DeclarationError, match=r"no tap for stage\(s\) \['b_sq'\]"):
        declare(taps={k: v for k, v in NetSide.taps.items() if k != "b_sq"})
    with pytest.raises(DeclarationError, match=r"a tap for 'dubled', which is not in the stage list \(close names: "
                                               r"doubled\)"):
        declare(taps={**{k: v for k, v in NetSide.taps.items() if k != "doubled"}, "dubled": module("a")})
    with pytest.raises(DeclarationError, match="a layer tap does not exist on a torch side"):
        declare(taps={**NetSide.taps, "a": layer("a")})
    with pytest.raises(DeclarationError, match="a module tap does not exist on a tensorflow side"):
        declare(byo.KerasSide, taps={**NetSide.taps, "a": module("a")})
    with pytest.raises(DeclarationError, match=r"stage 'a' is computed from \['b'\], which come\(s\) later"):
        declare(stage_list=(byo.stage("a", "B C N N", inputs="b"),) + NET_STAGES[1:])
    with pytest.raises(DeclarationError, match="inputs names no batch input"):
        declare(inputs=())
    assert declare().stages == tuple(s.name for s in NET_STAGES)


def test_the_model_factory_and_the_weights_are_checked_at_build():
    with pytest.raises(DeclarationError, match="model 'tests.helpers.byo_models:Nett' cannot be imported"):
        build(declare(model="tests.helpers.byo_models:Nett"))
    with pytest.raises(WeightMapError, match=r"2 parameter\(s\) of side declared would keep their random initial "
                                             r"values: unused.weight, unused.bias"):
        build(declare(weights=WeightMap({"a.weight": "wa", "a.bias": "ba", "b.weight": "wb", "b.bias": "bb"})))


def test_a_layout_that_does_not_fit_the_runtime_shape_is_an_error_naming_the_stage():
    side, model = build(declare(taps={**NetSide.taps, "b": module("b", layout=NHWC)}))
    with pytest.raises(LayoutError, match=r"stage 'b': the tap gave \(2, 2, 4, 4\), \(2, 4, 2, 4\) after layout "
                                          r"NHWC->NCHW, but the stage is declared \(B, C, N, N\): C is 4 here but 2 "
                                          r"elsewhere"):
        side.forward(model, net_inputs(size=4, channels=2))  # the right rank, but not the declared sizes
    side, model = build(declare(taps={**NetSide.taps, "b": module("b", layout=select(1, 0))}))
    with pytest.raises(LayoutError, match=r"stage 'b': the tap gave \(2, 2, 4, 4\), \(2, 4, 4\) after layout "
                                          r"select\(1, 0\), but the stage is declared \(B, C, N, N\)"):
        side.forward(model, net_inputs())
    side, model = build(declare(taps={**NetSide.taps, "b": module("b", layout=byo.unflatten(3))}))
    with pytest.raises(LayoutError, match=r"stage 'b': layout unflatten\(3\) does not fit the runtime shape "
                                          r"\(2, 2, 4, 4\)"):
        side.forward(model, net_inputs())


# ------------------------------------------------------------------ teacher forcing
def test_teacher_forcing_feeds_the_reference_values_through_hooks():
    side, model = build(NetSide)
    out = side.forward(model, net_inputs())
    ref = {k: v + 0.5 for k, v in out.items()}  # a "reference" that differs everywhere
    net = model.net
    import torch

    def conv(m, x):
        with torch.no_grad():
            return m(torch.as_tensor(x, dtype=torch.float32)).numpy()

    np.testing.assert_array_equal(side.run_stage(model, "b", {"b_in": ref["b_in"]}), conv(net.b, ref["b_in"]))
    np.testing.assert_array_equal(side.run_stage(model, "doubled", {"a": ref["a"]}), 2 * ref["a"].astype("f4"))
    # an input tap: its input stage is replaced where it is produced (the function's return value)
    np.testing.assert_array_equal(side.run_stage(model, "b_in", {"doubled": ref["doubled"]}),
                                  ref["doubled"].astype("f4") / 2 * 2)
    np.testing.assert_array_equal(side.run_stage(model, "b_sq", {"b": ref["b"]}), ref["b"].astype("f4") ** 2)
    # the model is left as it was: the next forward gives the same stages
    again = side.forward(model, net_inputs())
    for k in out:
        np.testing.assert_array_equal(again[k], out[k])


def test_stages_that_cannot_be_forced_say_why():
    cls = declare(stage_list=NET_STAGES[:3] + (byo.stage("b", "B C N N", inputs="b_in"),
                                               byo.stage("b_sq", "B C N N", inputs="b")),
                  taps={**NetSide.taps, "doubled": derived(lambda a: 2 * a), "b_in": module_input("b"),
                        "b": module("b", force=False, reason="the port fuses b with its input")})
    side, model = build(cls)
    out = side.forward(model, net_inputs())
    with pytest.raises(NotForced, match="its input stage 'doubled' is derived by the harness"):
        side.run_stage(model, "b_in", {"doubled": out["doubled"]})
    with pytest.raises(NotForced, match="declared force=False: the port fuses b with its input"):
        side.run_stage(model, "b", {"b_in": out["b_in"]})
    two = declare(stage_list=NET_STAGES[:3] + (byo.stage("b", "B C N N", inputs=("b_in", "a")),
                                               NET_STAGES[4]))
    side, model = build(two)
    out = side.forward(model, net_inputs())
    with pytest.raises(NotForced, match=r"module 'b' was called with 1 positional argument\(s\); teacher forcing "
                                        r"feeds argument 1 \(declare feed="):
        side.run_stage(model, "b", {"b_in": out["b_in"], "a": out["a"]})
    side, model = build(declare(stage_list=two.stage_list, taps={**NetSide.taps, "b": module("b", feed=(0,))}))
    side.forward(model, net_inputs())
    with pytest.raises(NotForced, match=r"module 'b' is fed 2 stage input\(s\) \['b_in', 'a'\] but feed=\(0,\) names 1"):
        side.run_stage(model, "b", {"b_in": out["b_in"], "a": out["a"]})


def test_a_local_error_that_was_not_checked_is_recorded_with_its_reason():
    from parity.jobs import Job, execute
    from parity.sides import register_side, unregister_side

    register_side("byo_net_unforced", "tests.unit.test_byo_sides:Unforced")
    try:
        config = {"channels": 2}
        from tests.helpers.byo_models import net_weights

        job = Job(side="byo_net_unforced", config=config, weights=net_weights(), inputs=net_inputs(),
                  graph=tuple((s.name, s.inputs) for s in NET_STAGES))
        ref = execute(job)
        job.teacher = ref.capture.stages
        res = execute(job)
    finally:
        unregister_side("byo_net_unforced")
    assert set(res.local) == {"a", "doubled", "b_in", "b_sq"}
    assert res.capture.meta["local_errors"] == {"b": "NotForced: stage 'b' is declared force=False: kept out"}
    assert res.capture.meta["derived"] == ["b_sq"] and res.capture.meta["taps"]["b_in"]["tap"] == "input of module b [0]"


Unforced = type("Unforced", (NetSide,), {"name": "byo_net_unforced", "__module__": __name__,
                                         "taps": {**NetSide.taps, "b": module("b", force=False, reason="kept out")}})


def test_float64_runs_in_float64():
    side, model = build(NetSide, dtype="float64")
    out = side.forward(model, net_inputs())
    assert all(v.dtype == np.float64 for v in out.values())


# ------------------------------------------------------------------ keras
def keras_weights():
    rng = np.random.default_rng(0)
    return {"a/kernel": rng.normal(size=(1, 1, 2, 2)), "a/bias": rng.normal(size=2),
            "shared/kernel": rng.normal(size=(1, 1, 2, 2)), "shared/bias": rng.normal(size=2)}


def keras_side(**taps):
    return type("K", (KerasNetSide,), {"name": "byo_keras_variant", "__module__": __name__,
                                       "taps": {**KerasNetSide.taps, **taps}})()


def test_keras_layers_are_read_from_one_sub_model_and_forced_by_calling_the_layer():
    pytest.importorskip("keras")
    side = KerasNetSide()
    model = side.build({"size": 4, "channels": 2}, keras_weights(), "float32", "cpu")
    x = net_inputs()["x"]
    out = side.forward(model, {"x": x})
    assert {k: v.shape for k, v in out.items()} == {"a": (2, 2, 4, 4), "b": (2, 2, 4, 4), "pair": (2, 2, 4, 4)}
    np.testing.assert_allclose(out["pair"], out["b"] + 1j * (out["b"] + 1), rtol=1e-6)
    np.testing.assert_array_equal(side.run_stage(model, "a", {"x": x}), out["a"])
    np.testing.assert_allclose(side.run_stage(model, "pair", {"b": out["b"] + 1}), out["pair"] + 1 + 1j, rtol=1e-6)
    f64 = side.build({"size": 4, "channels": 2}, keras_weights(), "float64", "cpu")
    assert side.forward(f64, {"x": x})["a"].dtype == np.float64


def test_keras_taps_that_do_not_exist_or_run_twice():
    pytest.importorskip("keras")
    args = ({"size": 4, "channels": 2}, keras_weights(), "float32", "cpu")
    with pytest.raises(TapError, match=r"layer 'shard' does not exist in model 'small'; close names that exist: "
                                       r"shared"):
        keras_side(b=layer("shard", layout=NHWC)).build(*args)
    with pytest.raises(TapError) as err:
        keras_side(b=layer("shared", layout=NHWC)).build(*args)
    assert "layer 'shared' is called 2 times in one forward (call 1 on the output of a; call 2 on the output of " \
           "shared)" in str(err.value)
    with pytest.raises(TapError, match="layer 'split' has 2 output"):
        keras_side(pair=layer("split", index=(0, 2), layout=(NHWC, byo.COMPLEX))).build(*args)
    with pytest.raises(WeightMapError, match="would keep their random initial values: shared/kernel, shared/bias"):
        KerasNetSide().build({"size": 4, "channels": 2}, {k: v for k, v in keras_weights().items()
                                                          if k.startswith("a/")}, "float32", "cpu")


def test_keras_function_taps_wrap_a_function_a_layer_calls():
    pytest.importorskip("keras")
    stages = KERAS_STAGES + (byo.stage("total", "B C N N", inputs="pair"), byo.stage("twice", "B C N N",
                                                                                   inputs="total"))
    cls = type("KF", (KerasNetSide,), {"name": "byo_keras_fn", "__module__": __name__, "stage_list": stages,
                                       "taps": {**KerasNetSide.taps,
                                                "total": function("tests.helpers.byo_functions.double", arg=0,
                                                                  layout=NHWC),
                                                "twice": function("tests.helpers.byo_functions.double",
                                                                  layout=NHWC)}})
    side = cls()
    model = side.build({"size": 4, "channels": 2}, keras_weights(), "float32", "cpu")
    out = side.forward(model, net_inputs())
    np.testing.assert_allclose(out["total"], 2 * out["b"] + 1, rtol=1e-6)
    np.testing.assert_allclose(out["twice"], 2 * out["total"], rtol=1e-6)
    np.testing.assert_allclose(side.run_stage(model, "twice", {"total": out["total"] + 1}), 2 * out["total"] + 2,
                               rtol=1e-6)
    assert square(np.array(3.0)) == 9.0


def test_a_derived_formula_that_raises_is_named_with_its_stage():
    def broken_square(b):
        raise ValueError("operands could not be broadcast")

    side, model = build(declare(taps={**NetSide.taps, "b_sq": derived(broken_square)}))
    with pytest.raises(RuntimeError, match="stage 'b_sq': broken_square raised ValueError: operands could not"):
        side.forward(model, net_inputs())
