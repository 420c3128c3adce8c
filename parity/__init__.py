"""parity: forward-parity harness for a TensorFlow reference and its PyTorch port.

Python API::

    import parity
    run = parity.run_case("n64_g2")          # both backends, compared stage by stage
    bool(run.result), run.result.first_divergent_stage
    parity.compare(capture_a, capture_b, parity.load_tolerances())

``parity`` itself imports NumPy only; TensorFlow and PyTorch are imported by the sides (parity.sides)
when a case runs.
"""
from .compare import compare
from .results import CaseResult, StageResult
from .tolerances import Tolerance, ToleranceTable, load_tolerances


def run_case(case, **kwargs):
    """See :func:`parity.run.run_case`."""
    from .run import run_case as _run_case

    return _run_case(case, **kwargs)


__all__ = ["CaseResult", "StageResult", "Tolerance", "ToleranceTable", "compare", "load_tolerances", "run_case"]
