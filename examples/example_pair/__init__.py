"""A small TensorFlow/Keras model and its PyTorch port, compared by the harness without a change
to either: the models are in ``keras_model`` and ``torch_model`` (with ``helpers``), the inputs
and weights in ``data``, and the whole declaration in ``declaration``.

Registered as the pair ``example`` through this repository's entry point (``pyproject.toml``,
group ``parity.pairs``): ``python -m parity.report --pair example``.
"""
from .declaration import pair

__all__ = ["pair"]
