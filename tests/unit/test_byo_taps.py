"""Taps on an unmodified torch model: hooks and function wrappers only for the duration of one
forward, restored even on error; a target that does not exist, never runs or runs twice."""
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from parity.byo import TapError, function, module, module_input  # noqa: E402
from parity.byo.taps import Tap, crop, derived, layer  # noqa: E402
from parity.sides.base import ForwardError  # noqa: E402
from tests.helpers import byo_functions, byo_models  # noqa: E402
from tests.helpers.byo_sides import NetSide, build, net_inputs  # noqa: E402


def side_with(name, **taps):
    return type(f"Side_{name}", (NetSide,), {"name": name, "taps": {**NetSide.taps, **taps}, "__module__": __name__})


def test_every_stage_is_captured_and_nothing_stays_patched():
    side, model = build(NetSide)
    before = (byo_functions.double, byo_models.halve)
    out = side.forward(model, net_inputs())
    x = torch.as_tensor(net_inputs()["x"], dtype=torch.float32)
    with torch.no_grad():
        a = model.net.a(x)
        b = model.net.b(2 * a)
    np.testing.assert_array_equal(out["a"], a.numpy())
    np.testing.assert_array_equal(out["doubled"], 2 * a.numpy())
    np.testing.assert_array_equal(out["b"], b.numpy())  # captured before relu_ changed it in place
    assert (out["b"] < 0).any()
    np.testing.assert_array_equal(out["b_sq"], b.numpy() ** 2)
    assert (byo_functions.double, byo_models.halve) == before
    for m in model.net.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_a_forward_that_raises_restores_everything_and_keeps_the_stages_before():
    cls = type("BrokenSide", (NetSide,), {"name": "broken_net", "model": "tests.helpers.byo_models:Broken",
                                          "__module__": __name__})
    side, model = build(cls)
    with pytest.raises(ForwardError, match="the model broke before b") as err:
        side.forward(model, net_inputs())
    assert set(err.value.stages) == {"a", "doubled"}
    assert byo_functions.double.__name__ == "double" and not hasattr(byo_functions.double, "__wrapped__")
    for m in model.net.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_targets_that_do_not_exist_list_the_close_names():
    side, model = build(NetSide)
    with pytest.raises(TapError, match=r"module 'bb' does not exist in Net; close names that exist: b"):
        build(side_with("t1", b=module("bb")))
    with pytest.raises(TapError, match=r"has no 'dubble'; close names that exist: double"):
        build(side_with("t2", doubled=function("tests.helpers.byo_functions.dubble")))
    with pytest.raises(TapError, match=r"module tests.helpers.byo_functons cannot be imported .*byo_functions"):
        build(side_with("t3", doubled=function("tests.helpers.byo_functons.double")))


def test_a_tap_that_never_fires_says_so():
    side, model = build(side_with("t4", b=module("unused")))
    with pytest.raises(TapError, match="stage 'b': module 'unused' was never called during the forward"):
        side.forward(model, net_inputs())


def test_a_function_imported_by_name_needs_also():
    side, model = build(side_with("t5", b_in=function("tests.helpers.byo_functions.halve", arg=0)))
    with pytest.raises(TapError) as err:
        side.forward(model, net_inputs())
    assert "was never called" in str(err.value) and "also=('tests.helpers.byo_models',)" in str(err.value)
    side, model = build(side_with("t6", b_in=function("tests.helpers.byo_functions.halve",
                                                      also="tests.helpers.byo_models")))
    out = side.forward(model, net_inputs())
    np.testing.assert_allclose(out["b_in"], out["doubled"] / 2)
    assert byo_models.halve is byo_functions.halve and not hasattr(byo_models.halve, "__wrapped__")


def test_a_stage_tapped_twice_in_one_forward_names_the_calls():
    side, model = build(side_with("t7", b=module("shared")))
    with pytest.raises(TapError) as err:
        side.forward(model, net_inputs())
    text = str(err.value)
    assert "module 'shared' ran 2 times in one forward" in text and "call=N" in text
    lines = [int(n) for n in re.findall(r"byo_models\.py:(\d+)", text)]
    assert len(lines) == 2 and lines[1] == lines[0] + 1
    side, model = build(side_with("t8", b=module("shared", call=2)))
    assert side.forward(model, net_inputs())["b"].shape == (2, 2, 4, 4)
    side, model = build(side_with("t9", b=module("shared", call=3)))
    with pytest.raises(TapError, match="takes call 3 of module 'shared', which ran 2 time"):
        side.forward(model, net_inputs())


def test_tap_declarations():
    assert module("a").describe() == "output of module a"
    assert module_input("b", 1).describe() == "input of module b [1]"
    assert function("p.f", arg="x").kind == "function_arg" and function("p.f", 0).index == 0
    assert layer("conv", index=(0, 1), call=2).describe() == "output of layer conv [(0, 1)] (call 2)"
    assert derived(crop(4)).describe() == "derived by crop(4)"
    for bad in (lambda: function("nodots"), lambda: function("p.f", 0, arg=1), lambda: layer("l", call=0),
                lambda: module("m", index=True), lambda: Tap("hook")):
        with pytest.raises(ValueError):
            bad()


def test_captures_are_copied_only_when_an_in_place_operation_overwrote_them(monkeypatch):
    from parity.byo import TorchSide

    runs = []
    once = TorchSide._run_once
    monkeypatch.setattr(TorchSide, "_run_once", lambda self, *a: runs.append(self._copying) or once(self, *a))
    side, model = build(NetSide)  # Net applies relu_ to b's output after it was captured
    out = side.forward(model, net_inputs())
    assert runs == [False, True] and (out["b"] < 0).any()
    from examples.example_pair import data
    from examples.example_pair.declaration import TorchPort

    runs.clear()
    config = {"size": 8, "channels": 2, "features": 4}
    port = TorchPort()
    port.forward(port.build(config, data.weights(config, 0), "float32", "cpu"), data.inputs(config, 0, 1))
    assert runs == [False]  # no in-place operation: one run, nothing copied
