"""Fixtures shared by the unit tests of the command line and the hub."""
from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="session")
def one_case_hub(tmp_path_factory):
    """A hub written by a one-case report (n64_g1, with figures): root and parsed report."""
    from parity.report import hub as hub_mod
    from parity.report.__main__ import main

    root = tmp_path_factory.mktemp("one_case") / "hub"
    code = main(["--case", "n64_g1", "--hub", str(root), "-q"])
    assert code == 0
    return {"root": root, "doc": json.loads((root / hub_mod.REPORT_JSON).read_text())}
