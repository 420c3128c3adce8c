"""Shared pytest hooks: `gpu` tests are skipped, with the reason, when no CUDA device exists."""
import pytest


def _cuda_reason():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover
        return f"torch is not importable: {exc}"
    if not torch.cuda.is_available():
        return f"no CUDA device visible to torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'})"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    reason = _cuda_reason()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))
