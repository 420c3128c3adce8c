"""`python -m parity.report --devices cpu,cuda`: the device section and the device matrix."""
import json

import jsonschema

from parity.report.__main__ import main


def test_devices_cpu_cuda_runs_the_matrix_and_reports_cuda(tmp_path):
    hub = tmp_path / "hub"
    rc = main(["--case", "n64_g1", "--devices", "cpu,cuda", "--isolation", "inprocess", "--no-figures", "-q",
               "--hub", str(hub)])
    doc = json.loads((hub / "parity_report.json").read_text())
    jsonschema.validate(doc, json.loads((hub / "parity_report.schema.json").read_text()))
    m = doc["device_matrix"]
    compared = {(e["candidate"], e["reference"]) for e in m["entries"] if e["status"] == "compared"}
    assert {("reference_tf/cpu/float32", "reference_tf/cpu/float64"), ("torch_impl/cpu/float32", "torch_impl/cpu/float64")} <= compared
    for e in m["entries"]:
        if e["status"] == "compared":
            assert len(e["stages"]) == 15 and e["verdict"] == "pass"
    cuda = [e for e in m["entries"] if e["device"] == "cuda"]
    assert len(cuda) == 2
    import torch

    if not torch.cuda.is_available():
        assert rc == 0 and doc["verdict"] == "pass"
        assert all(e["status"] == "unavailable" and "sees no cuda device" in e["reason"] for e in cuda)
        assert any(d["device"] == "cuda" and d["status"] == "unavailable" for d in doc["devices"])
    page = (hub / "index.html").read_text()
    assert "Device matrix (n64_g1)" in page and "torch_impl/cpu/float64" in page
