"""TensorFlow reference of the PtychoPINN-style forward model (forward-model.md).

``reference_tf.config`` and ``reference_tf.weights`` need NumPy only; TensorFlow is
imported when ``ForwardModel`` (``reference_tf.model``) is first used.
"""
from .config import ModelConfig
from .weights import check_weights, init_weights, weight_spec

__all__ = ["ModelConfig", "ForwardModel", "check_weights", "init_weights", "weight_spec"]


def __getattr__(name):
    if name == "ForwardModel":
        from .model import ForwardModel

        return ForwardModel
    raise AttributeError(f"module 'reference_tf' has no attribute {name!r}")
