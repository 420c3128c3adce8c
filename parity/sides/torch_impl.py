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

    # ---- gradients (autograd) ------------------------------------------------------------------
    supports_gradients = True
    complex_gradient = "dx+idy"  # autograd of a real loss: dL/dRe + i dL/dIm (docs/backward.md)

    @staticmethod
    def _np(t):
        return t.detach().resolve_conj().cpu().numpy()

    def _differentiate(self, model, out, wrt, cotangent=None):
        """(grads of ``wrt`` tensors by name, neutral weight grads) of ``out`` (None: not reached)."""
        import torch
        from torch_impl.weights import from_torch_state, torch_name

        params = dict(model.generator.named_parameters())
        live = {k: t for k, t in {**wrt, **{"__p__" + n: p for n, p in params.items()}}.items() if t.requires_grad}
        grads = {}
        if out.requires_grad and live:
            got = torch.autograd.grad(out, list(live.values()), grad_outputs=cotangent, allow_unused=True)
            grads = {k: g for k, g in zip(live, got) if g is not None}
        tensors = {k: self._np(g) for k, g in grads.items() if not k.startswith("__p__")}
        pg = {n[5:]: g for n, g in grads.items() if n.startswith("__p__")}
        if not pg:
            return tensors, {}
        state = {n: (pg[n] if n in pg else torch.zeros_like(p)).detach().resolve_conj().cpu() for n, p in params.items()}
        weights = from_torch_state(model.config, state)
        return tensors, {k: v for k, v in weights.items() if torch_name(k) in pg}

    def gradients(self, model, inputs, loss):
        import torch
        from torch_impl.model import STAGE_INPUTS, STAGE_NAMES

        if loss not in STAGE_INPUTS:
            raise ValueError(f"unknown loss stage {loss!r}")
        model.generator.requires_grad_(True)
        try:
            with torch.enable_grad():
                env = model._check_batch(inputs["diffraction"], inputs["offsets"], inputs["probe_raw"])
                for t in env.values():
                    t.requires_grad_(True)
                for name in STAGE_NAMES:
                    env[name] = model._compute(name, {k: env[k] for k in STAGE_INPUTS[name]})
                    if name == loss:
                        break
                wrt = {n: env[n] for n in STAGE_NAMES if n in env}
                return (*self._differentiate(model, env[loss], wrt), {n: self._np(t) for n, t in wrt.items()})
        finally:
            model.generator.requires_grad_(False)

    def stage_vjp(self, model, name, env, cotangent):
        import torch
        from torch_impl.model import STAGE_INPUTS

        model.generator.requires_grad_(True)
        try:
            with torch.enable_grad():
                batch: Dict[str, int] = {}
                e = {k: model._prepare(k, env[k], batch).requires_grad_(True) for k in STAGE_INPUTS[name]}
                out = model._compute(name, e)
                cot = torch.as_tensor(np.asarray(cotangent), device=model.device).to(out.dtype)
                return self._differentiate(model, out, e, cot)
        finally:
            model.generator.requires_grad_(False)
