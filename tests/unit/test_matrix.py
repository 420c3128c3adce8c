"""The device matrix: its comparison path runs on CPU too; CUDA entries need a GPU."""
import json

import pytest

from parity import cases
from parity.matrix import run_matrix


@pytest.fixture(scope="module")
def cpu_matrix():
    return run_matrix("n64_g1", ("cpu", "cuda"), tf32=True, isolation="inprocess",
                      available={"reference_tf": {"cpu": "CPU"}, "torch_impl": {"cpu": "CPU"}})


def test_cpu_float32_is_checked_against_cpu_float64_for_both_backends(cpu_matrix):
    compared = [e for e in cpu_matrix.entries if e.status == "compared"]
    assert {(e.candidate, e.reference) for e in compared} == {
        ("reference_tf/cpu/float32", "reference_tf/cpu/float64"), ("torch_impl/cpu/float32", "torch_impl/cpu/float64")}
    for e in compared:
        assert e.result, e.result.summary()
        assert len(e.result.stages) == 15
        # float32 vs float64 of the same backend is not bitwise: the comparison saw real error
        assert max(s.max_abs for s in e.result.stages) > 0


def test_unavailable_cuda_is_reported_with_a_reason_and_does_not_fail(cpu_matrix):
    missing = [e for e in cpu_matrix.entries if e.status == "unavailable"]
    assert {e.side for e in missing} == {"reference_tf", "torch_impl"}
    assert all("sees no cuda device" in e.reason for e in missing)
    assert cpu_matrix.verdict == "pass"
    json.dumps(cpu_matrix.to_dict())


def test_a_float32_error_beyond_tolerance_fails_the_matrix(tmp_path):
    tight = tmp_path / "tight.toml"
    tight.write_text(
        "[defaults.float32]\nrtol = 0.0\natol = 0.0\natol_scaled = 1e-12\n"
        "[defaults.float64]\nrtol = 0.0\natol = 0.0\natol_scaled = 1e-15\n"
    )
    m = run_matrix("n64_g1", ("cpu",), tolerances=tight, isolation="inprocess",
                   available={"reference_tf": {"cpu": "CPU"}, "torch_impl": {"cpu": "CPU"}})
    assert m.verdict == "fail"


@pytest.mark.gpu
def test_cuda_matrix():
    m = run_matrix("n64_g2", ("cpu", "cuda"), tf32=True)
    torch_cuda = [e for e in m.entries if e.side == "torch_impl" and e.device == "cuda"]
    assert torch_cuda and all(e.status == "compared" for e in torch_cuda)
    refs = {e.reference for e in torch_cuda}
    assert {"torch_impl/cpu/float64", "torch_impl/cpu/float32", "reference_tf/cpu/float32"} <= refs
    strict = [e for e in torch_cuda if "+tf32" not in e.candidate]
    assert all(e.result for e in strict), [e.result.summary() for e in strict if not e.result]


@pytest.mark.gpu
@pytest.mark.parametrize("case", [c.name for c in cases.suite("adversarial")])
def test_cuda_adversarial(case):
    m = run_matrix(case, ("cpu", "cuda"))
    assert m, [e.result.summary() for e in m.entries if e.result is not None and not e.result]
