"""The side contract: one implementation of a forward model in one framework.

A *side* (e.g. ``reference_tf``, ``torch_impl``) builds a model from a config and a neutral
weight set, runs one batch and returns every stage as canonical NumPy arrays, and can compute
one stage again from given inputs (teacher forcing, for local error). Roles (reference or
candidate) are not the side's business: a pair names which side plays which role
(:mod:`parity.pairs`), and the same side may play both.

Framework imports happen inside the methods, never at module import, so a side's class can be
looked at (name, framework, stages) without TensorFlow or PyTorch.
"""
from __future__ import annotations

import abc
from typing import Dict, Mapping, Optional, Tuple

import numpy as np


class SideUnavailable(RuntimeError):
    """The side's framework cannot be imported (or the device is absent)."""


class Side(abc.ABC):
    """One implementation of the forward model.

    Class attributes (readable without importing the framework):

    * ``name``: the registry name (``reference_tf``);
    * ``framework``: ``"tensorflow"``, ``"torch"``, ...;
    * ``stages``: the stage names this side emits, in pipeline order (``None``: exactly the
      pair's stage list); a pair refuses two sides whose lists differ;
    * ``supports_teacher``: :meth:`run_stage` is implemented (local error);
    * ``fresh_process``: run every job in a new worker process (sides with global state);
    * ``supports_training``: :meth:`train_steps` is implemented (parity.training); else
      ``training_unavailable`` says why.
    * ``supports_gradients``: :meth:`gradients` and :meth:`stage_vjp` are implemented (backward
      parity); ``gradients_unavailable`` says why not when False;
    * ``complex_gradient``: the form the framework gives the gradient of a real loss with
      respect to a complex tensor, ``"dx+idy"`` or ``"dx-idy"`` (:mod:`parity.gradients`
      converts, in one place; docs/backward.md).
    """

    name: str = ""
    framework: str = ""
    stages: Optional[Tuple[str, ...]] = None
    supports_teacher: bool = True
    fresh_process: bool = False
    supports_training: bool = False
    training_unavailable: str = "the side does not implement train_steps"
    supports_gradients: bool = False
    gradients_unavailable: str = "this side does not compute gradients"
    complex_gradient: str = "dx+idy"

    @abc.abstractmethod
    def versions(self) -> Dict[str, str]:
        """Framework versions (imports the framework)."""

    @abc.abstractmethod
    def devices(self) -> Dict[str, str]:
        """Device name -> description, for the devices this side can see."""

    @abc.abstractmethod
    def determinism_flags(self) -> Dict[str, object]:
        ...

    def set_tf32(self, enabled: bool) -> None:
        """Allow (or forbid) TF32 math on GPUs, process-wide; recorded by determinism_flags."""

    @abc.abstractmethod
    def build(self, config: Dict[str, object], weights: Mapping[str, np.ndarray], dtype: str, device: str):
        """Return a model object with the weights loaded."""

    @abc.abstractmethod
    def forward(self, model, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run one batch; return every stage as canonical NumPy arrays, in stage order.

        A forward that raises part-way may raise :class:`ForwardError` carrying the stages it
        produced before the failure (the harness then names the stage that failed)."""

    @classmethod
    def refuses(cls, config: Dict[str, object], dtype: str) -> Optional[str]:
        """Why this side cannot express a case (its config and dtype), or None. A refused case
        is not run and not approximated: the report lists it with the reason. Must not import
        the framework (the harness asks before any worker starts)."""
        return None

    @classmethod
    def setup_problem(cls) -> Optional[str]:
        """What this side needs that is missing before any case can run (e.g. a checkout of the
        user's code that no setting names), or None. Asked before any worker starts; must not
        import the framework."""
        return None

    def given(self, config: Dict[str, object], dtype: str) -> Optional[Dict[str, object]]:
        """What this side was given for the case, where it translates the case config into a
        configuration of its own (plain JSON; recorded in the capture's meta as ``given``)."""
        return None

    def own_losses(self, model, inputs: Mapping[str, np.ndarray],
                   stages: Mapping[str, np.ndarray]) -> Dict[str, Dict[str, object]]:
        """The side's OWN losses, computed by its own code the way its training computes them,
        from this forward's stages and the batch: name -> {"value", "computed_by", "canonical"
        (the pair's loss stage it corresponds to, if any), "relation" (how the two relate)}.
        Recorded beside the canonical loss stages, which the harness derives the same way on
        both sides; default: none."""
        return {}

    def capture_meta(self) -> Dict[str, object]:
        """Extra entries for the capture's meta (e.g. how each stage was tapped); plain JSON."""
        return {}

    def run_stage(self, model, name: str, env: Mapping[str, np.ndarray]) -> np.ndarray:
        """Compute one stage from canonical inputs (teacher forcing); canonical output."""
        raise NotImplementedError(f"side {self.name!r} cannot compute a single stage (no teacher forcing)")


    def train_steps(self, model, batches: Mapping[str, np.ndarray], settings: Mapping[str, object]
                    ) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        """Run ``settings["steps"]`` optimiser steps of the model's trainable weights from the
        weights it was built with (parity.training.TrainSettings: loss, Adam's hyperparameters);
        ``batches``: canonical batch inputs stacked over the steps. Returns the loss of each
        step (before its update) and the neutral weight set after each step, each array
        stacked over the steps."""
        raise NotImplementedError(f"side {self.name!r} cannot run training steps: {self.training_unavailable}")
    def gradients(self, model, inputs: Mapping[str, np.ndarray], loss: str
                  ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray], Dict[str, np.ndarray]]:
        """Run one batch and differentiate the loss stage ``loss`` (``loss_nll``, ``loss_mae``):
        ``(stage -> dL/dstage, canonical layout; neutral weight name -> dL/dW, neutral layout;
        stage -> the value it had in this differentiated pass, canonical)``, gradients in the
        side's :attr:`complex_gradient` form. A stage or weight the loss does not reach may be
        left out (the harness takes its gradient as zero)."""
        raise NotImplementedError(f"side {self.name!r} does not compute gradients: {self.gradients_unavailable}")

    def stage_vjp(self, model, name: str, env: Mapping[str, np.ndarray], cotangent: np.ndarray
                  ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
        """The vector-Jacobian product of ONE stage at canonical inputs ``env`` with the output
        cotangent ``cotangent`` (canonical layout, the side's complex form): ``(input -> its
        cotangent; neutral weight name -> its cotangent)`` for the inputs and weights the stage
        reaches (local backward error, by teacher forcing)."""
        raise NotImplementedError(f"side {self.name!r} has no vector-Jacobian product: {self.gradients_unavailable}")


class ForwardError(RuntimeError):
    """A forward pass that failed part-way: ``stages`` holds what it produced before."""

    def __init__(self, message: str, stages: Mapping[str, np.ndarray]):
        super().__init__(message)
        self.stages = dict(stages)
