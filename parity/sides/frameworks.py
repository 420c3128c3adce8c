"""Framework plumbing shared by every side of one framework: versions, devices, TF32 and the
device a model runs on. Mixed into a side class before :class:`parity.sides.base.Side`, e.g.
``class ReferenceTF(TensorFlowFramework, Side)``; the framework is imported on first use."""
from __future__ import annotations

import os
from typing import Dict

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tf():
    import tensorflow

    tensorflow.get_logger().setLevel("ERROR")
    return tensorflow


def torch():
    import torch as _torch

    return _torch


class TensorFlowFramework:
    framework = "tensorflow"

    def versions(self) -> Dict[str, str]:
        t = tf()
        import keras

        build = t.sysconfig.get_build_info()
        return {"tensorflow": t.__version__, "keras": keras.__version__, "numpy": np.__version__,
                "cuda": str(build.get("cuda_version", "none")), "cudnn": str(build.get("cudnn_version", "none"))}

    def devices(self) -> Dict[str, str]:
        t = tf()
        out = {"cpu": "CPU"}
        for i, dev in enumerate(t.config.list_physical_devices("GPU")):
            out["cuda" if i == 0 else f"cuda:{i}"] = t.config.experimental.get_device_details(dev).get(
                "device_name", dev.name)
        return out

    def set_tf32(self, enabled: bool) -> None:
        tf().config.experimental.enable_tensor_float_32_execution(bool(enabled))

    def device_scope(self, device: str):
        """``with self.device_scope("cuda:1"):`` places TensorFlow ops; an absent GPU raises."""
        t = tf()
        if device == "cpu":
            return t.device("/CPU:0")
        if device.startswith("cuda"):
            if not t.config.list_physical_devices("GPU"):
                raise RuntimeError(f"device {device!r} requested but TensorFlow sees no GPU")
            return t.device(f"/GPU:{device.split(':')[1] if ':' in device else '0'}")
        raise ValueError(f"unknown device {device!r}; expected 'cpu' or 'cuda[:i]'")


class TorchFramework:
    framework = "torch"

    def versions(self) -> Dict[str, str]:
        t = torch()
        return {"torch": t.__version__, "numpy": np.__version__, "cuda": str(t.version.cuda or "none"),
                "cudnn": str(t.backends.cudnn.version() or "none")}

    def devices(self) -> Dict[str, str]:
        t = torch()
        out = {"cpu": "CPU"}
        if t.cuda.is_available():
            for i in range(t.cuda.device_count()):
                out["cuda" if i == 0 else f"cuda:{i}"] = t.cuda.get_device_name(i)
        return out

    def set_tf32(self, enabled: bool) -> None:
        t = torch()
        t.backends.cuda.matmul.allow_tf32 = bool(enabled)
        t.backends.cudnn.allow_tf32 = bool(enabled)
        t.set_float32_matmul_precision("high" if enabled else "highest")

    def check_device(self, device: str) -> None:
        if device.startswith("cuda") and not torch().cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but torch sees no CUDA device")
