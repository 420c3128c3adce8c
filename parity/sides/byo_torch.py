"""TorchSide: an unmodified ``torch.nn.Module`` as a side, tapped by forward hooks and function
wrappers (see :mod:`parity.sides.declared` for the declaration, :mod:`parity.byo` for the API).

The model is built by the declared ``model`` callable with the case config as keyword
arguments, put in eval mode, moved to the run's dtype and device, and loaded through the side's
weight map (every parameter set or declared ``not_transferred``). A forward runs under
``torch.no_grad()`` with the hooks of that forward only.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from .declared import Built, DeclaredSide
from .frameworks import TorchFramework, torch as _torch
from .tap_points import Recorder, TapError, framework_dirs
from .torch_hooks import ModuleHooks, changed, find_module, snapshot, unheld


class TorchSide(TorchFramework, DeclaredSide):
    """Subclass and set ``name``, ``stage_list``, ``model``, ``inputs``, ``taps``, ``weights``."""

    TAP_KINDS = ("module", "module_input", "function", "function_arg", "derived")

    def determinism_flags(self) -> Dict[str, object]:
        torch = _torch()
        return {"deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
                "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
                "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
                "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                "num_threads": torch.get_num_threads(), "num_interop_threads": torch.get_num_interop_threads()}

    # ------------------------------------------------------------ framework parts
    def _make(self, factory, config, dtype, device):
        torch = _torch()
        self.check_device(device)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        net = factory(**config)
        if not isinstance(net, torch.nn.Module):
            raise TypeError(f"side {self.name}: model {type(self).model!r} returned a {type(net).__name__}, "
                            f"not a torch.nn.Module")
        return net.to(device=device, dtype=getattr(torch, dtype)).eval()

    def _targets(self, net) -> Tuple[Dict[str, Tuple[int, ...]], List[str]]:
        params = {k: tuple(p.shape) for k, p in net.named_parameters()}
        buffers = {k: tuple(b.shape) for k, b in net.named_buffers() if k in net.state_dict()}
        return {**buffers, **params}, list(params)

    def _set_weights(self, net, arrays: Dict[str, np.ndarray]) -> None:
        torch = _torch()
        state = dict(net.named_parameters())
        state.update({k: b for k, b in net.named_buffers()})
        with torch.no_grad():
            for name, value in arrays.items():
                t = state[name]
                t.copy_(torch.as_tensor(np.ascontiguousarray(value)).to(dtype=t.dtype, device=t.device))

    def _prepare(self, built: Built) -> None:
        for name, tap in self.taps.items():
            if tap.kind in ("module", "module_input"):
                find_module(built.net, tap.target, name)
            elif tap.kind in ("function", "function_arg"):
                from .function_taps import resolve

                resolve(tap.target, name)

    def _tensor(self, built: Built, array: np.ndarray) -> Any:
        return _torch().as_tensor(np.ascontiguousarray(array), device=built.device)

    def _numpy(self, value: Any) -> Any:
        torch = _torch()
        value = unheld(value)
        if isinstance(value, (tuple, list)):
            return tuple(self._numpy(v) for v in value)
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
        return np.asarray(value)

    def _call(self, built: Built, native: List[Any], rec: Recorder) -> Dict[str, Any]:
        torch = _torch()
        owner = {t.target: n for n, t in self.taps.items() if t.kind in ("module", "module_input")}
        with torch.no_grad(), ModuleHooks(built.net, rec.group("module"), owner):
            built.net(*native)
        return {}

    def _skip_dirs(self) -> Tuple[str, ...]:
        return framework_dirs(_torch())

    def _snapshot(self, value: Any) -> Any:
        return snapshot(value, clone=self._copying)

    def _stale(self, values: Dict[str, Any]) -> bool:
        return any(changed(v) for v in values.values())


__all__ = ["TapError", "TorchSide"]
