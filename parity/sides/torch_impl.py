"""The ``torch_impl`` side: our PyTorch port, natively channels-first (no layout conversion)."""
from __future__ import annotations

from typing import Dict, Mapping

import numpy as np

from .base import ForwardError, Side
from .frameworks import TorchFramework


class TorchImpl(TorchFramework, Side):
    name = "torch_impl"
    supports_training = True

    def train_steps(self, model, batches, settings):
        from .training import train_torch

        return train_torch(model, batches, settings)

    def determinism_flags(self) -> Dict[str, object]:
        from torch_impl.model import determinism_flags

        return determinism_flags()

    def build(self, config, weights, dtype, device):
        from torch_impl import ForwardModel, ModelConfig

        self.check_device(device)
        return ForwardModel(ModelConfig.from_dict(dict(config)), weights, dtype=dtype, device=device)

    def forward(self, model, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        taps: dict = {}
        try:
            model.forward(inputs["diffraction"], inputs["offsets"], inputs["probe_raw"], taps=taps)
        except Exception as exc:
            raise ForwardError(f"{type(exc).__name__}: {exc}",
                               {name: t.detach().cpu().numpy() for name, t in taps.items()}) from exc
        return {name: t.detach().cpu().numpy() for name, t in taps.items()}

    def run_stage(self, model, name: str, env: Mapping[str, np.ndarray]) -> np.ndarray:
        import torch

        real = model.real_dtype
        cplx = model.complex_dtype
        tensors = {
            k: torch.as_tensor(np.asarray(v), device=model.device).to(cplx if np.iscomplexobj(v) else real)
            for k, v in env.items()
        }
        with torch.no_grad():
            out = model.stage(name, tensors)
        return out.detach().cpu().numpy()
