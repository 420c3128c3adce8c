"""Backend adapters: the only part of ``parity`` that imports TensorFlow or PyTorch."""
from .base import BACKENDS, Adapter, BackendUnavailable, Job, JobResult, execute, get_adapter

__all__ = ["BACKENDS", "Adapter", "BackendUnavailable", "Job", "JobResult", "execute", "get_adapter"]
