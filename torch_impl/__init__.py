"""PyTorch port of the PtychoPINN-style forward model (forward-model.md)."""
from .config import ModelConfig
from .model import ForwardModel, determinism_flags, set_deterministic
from .weights import check_weights, init_weights, weight_spec

__all__ = [
    "ModelConfig",
    "ForwardModel",
    "check_weights",
    "init_weights",
    "weight_spec",
    "determinism_flags",
    "set_deterministic",
]
