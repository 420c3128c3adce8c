"""The ``torch_impl`` side: our PyTorch port, natively channels-first (no layout conversion)."""
from __future__ import annotations

from typing import Dict, Mapping

import numpy as np

from .base import ForwardError, Side


class TorchImpl(Side):
    name = "torch_impl"
    framework = "torch"

    def versions(self) -> Dict[str, str]:
        import torch

        return {
            "torch": torch.__version__,
            "numpy": np.__version__,
            "cuda": str(torch.version.cuda or "none"),
            "cudnn": str(torch.backends.cudnn.version() or "none"),
        }

    def devices(self) -> Dict[str, str]:
        import torch

        out = {"cpu": "CPU"}
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                out["cuda" if i == 0 else f"cuda:{i}"] = torch.cuda.get_device_name(i)
        return out

    def determinism_flags(self) -> Dict[str, object]:
        from torch_impl.model import determinism_flags

        return determinism_flags()

    def set_tf32(self, enabled: bool) -> None:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
        torch.backends.cudnn.allow_tf32 = bool(enabled)
        torch.set_float32_matmul_precision("high" if enabled else "highest")

    def build(self, config, weights, dtype, device):
        import torch

        from torch_impl import ForwardModel, ModelConfig

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but torch sees no CUDA device")
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
