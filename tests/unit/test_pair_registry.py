"""Finding pairs: the parity.pairs entry point group, --pair-from module:object, a pair's
sides registered when it is resolved; bad input is one line and exit 2."""
import importlib.metadata
import json

import pytest

from parity import pairs, sides
from parity.pairs import PairError, load_pair_from, resolve_pair
from parity.report import hub as hub_mod
from parity.report.__main__ import main

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


def test_the_cli_reports_a_pair_module_that_cannot_be_imported_in_one_line(registry, tmp_path, capsys):
    assert main(["--pair-from", "tests.helpers.no_such_module:pair", "--hub", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--pair-from" in err and "No module named 'tests.helpers.no_such_module'" in err
    assert not (tmp_path / "h").exists()
    assert main(["--pair", "byo_net", "--pair-from", "tests.helpers.byo_sides:net_pair"]) == 2
    assert "either --pair or --pair-from" in capsys.readouterr().err
    assert main(["--pair-from", "tests.helpers.byo_sides:net_pair", "--list"]) == 0
    assert "net_small" in capsys.readouterr().out


def test_a_report_from_pair_from_shows_taps_derived_stages_and_what_was_not_forced(registry, tmp_path):
    hub = tmp_path / "hub"
    assert main(["--pair-from", "tests.helpers.byo_sides:unforced_pair", "--hub", str(hub), "--no-figures",
                 "--isolation", "inprocess", "-q"]) == 0
    doc = json.loads((hub / hub_mod.REPORT_JSON).read_text())
    assert doc["pair"]["origin"] == "tests.helpers.byo_sides:unforced_pair"
    stages = {s["name"]: s for s in doc["cases"][0]["stages"]}
    assert stages["b_sq"]["derived"] is True and stages["b"]["derived"] is False
    assert stages["b_in"]["taps"] == {"reference": "input of module b [0]", "candidate": "input of module b [0]"}
    assert stages["b"]["local_error"] is None and stages["b"]["label"] == "ok"
    assert stages["b"]["local_not_checked"] == "NotForced: stage 'b' is declared force=False: kept out on purpose"
    assert stages["a"]["local_error"] == 0 and "local_not_checked" not in stages["a"]
    pairs._PAIRS.pop("byo_net_unforced")  # a later process knows the pair only by where it came from
    again = tmp_path / "again"
    assert main(["--recheck", str(hub), "--hub", str(again), "--no-figures", "-q"]) == 0
    assert json.loads((again / hub_mod.REPORT_JSON).read_text())["pair"]["name"] == "byo_net_unforced"
