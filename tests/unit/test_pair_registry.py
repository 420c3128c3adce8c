"""Finding pairs: the parity.pairs entry point group, module:object, a pair's sides registered
when it is resolved."""
import importlib.metadata

import pytest

from parity import pairs, sides
from parity.pairs import PairError, load_pair_from, resolve_pair

pytest.importorskip("torch")


@pytest.fixture
def registry(monkeypatch):
    """The pair and side registries as they were, afterwards."""
    saved_pairs, saved_sides = dict(pairs._PAIRS), dict(sides._REGISTRY)
    loaded = pairs._ENTRY_POINTS["loaded"]
    yield monkeypatch
    pairs._PAIRS.clear()
    pairs._PAIRS.update(saved_pairs)
    sides._REGISTRY.clear()
    sides._REGISTRY.update(saved_sides)
    pairs._ENTRY_POINTS["loaded"] = loaded


def fake_entry_points(monkeypatch, *specs):
    eps = [importlib.metadata.EntryPoint(name, value, pairs.ENTRY_POINT_GROUP) for name, value in specs]
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [e for e in eps if e.group == group])
    pairs._ENTRY_POINTS["loaded"] = False
    for name, _ in specs:
        pairs._PAIRS.pop(name, None)


def test_pairs_come_from_entry_points_and_register_their_sides(registry):
    fake_entry_points(registry, ("net_ep", "tests.helpers.byo_sides:net_pair"), ("broken_ep", "no_such_pkg_q:pair"))
    sides._REGISTRY.pop("byo_net", None)
    assert "net_ep" in pairs.pair_names() and "broken_ep" in pairs.pair_names()
    pair = resolve_pair("net_ep")
    assert pair.name == "byo_net" and pair.spec == "byo_net:byo_net"
    assert sides.side_target("byo_net") == "tests.helpers.byo_sides:NetSide"
    with pytest.raises(PairError) as err:
        resolve_pair("broken_ep")
    assert "entry point 'no_such_pkg_q:pair'" in str(err.value) and "ModuleNotFoundError" in str(err.value)
    assert "\n" not in str(err.value)
    # a broken entry point hides no other pair, and the default pair needs none of them
    assert resolve_pair(None).spec == "reference_tf:torch_impl"
    assert resolve_pair("byo_net:byo_net").stage_names == pair.stage_names


def test_sides_given_as_reference_candidate_find_the_pair_they_belong_to(registry):
    fake_entry_points(registry, ("net_ep", "tests.helpers.byo_sides:net_pair"))
    for name in ("byo_net", "byo_net_unforced"):
        sides._REGISTRY.pop(name, None)
    assert resolve_pair("byo_net:byo_net").cases.get_case("net_small").seed == 3
    assert resolve_pair("torch_impl:torch_impl").name == "torch_impl:torch_impl"


def test_load_pair_from_module_object(registry):
    pair = load_pair_from("tests.helpers.byo_sides:unforced_pair")
    assert pair.origin == "tests.helpers.byo_sides:unforced_pair" and pair.to_dict()["origin"] == pair.origin
    assert resolve_pair("byo_net_unforced").candidate == "byo_net_unforced"
    assert "origin" not in resolve_pair(None).to_dict()
    for bad, words in (("tests.helpers.byo_sides", "must be module:object"),
                       ("tests.helpers.no_such_module:pair", "ModuleNotFoundError: No module named"),
                       ("tests.helpers.byo_sides:no_such_pair", "AttributeError"),
                       ("tests.helpers.byo_sides:NET_STAGES", "gave a tuple, not a parity.pairs.Pair")):
        with pytest.raises(PairError, match=words):
            load_pair_from(bad)
