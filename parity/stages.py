"""The one list of stages (forward-model.md §7): names, canonical shapes, kinds, inputs.

Everything that iterates over stages (sides, comparator, report, tests, goldens)
iterates over :data:`STAGES`. Canonical layout is channels-first, as in §7.

Each stage is a function of earlier stages and of the batch inputs (``diffraction``,
``offsets``, ``probe_raw``); :attr:`Stage.inputs` names them, which is what teacher
forcing (local error) feeds from one backend into the other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, Sequence, Tuple, Union

#: Inputs of one batch, canonical layout: diffraction (B, C, N, N) real = Xs = s * X,
#: offsets (B, C, 2) real [dx, dy], probe_raw (N, N) complex.
BATCH_INPUTS = ("diffraction", "offsets", "probe_raw")


@dataclass(frozen=True)
class Stage:
    name: str
    shape: Tuple[str, ...]  # symbolic canonical shape, e.g. ("B", "C", "N", "N")
    complex: bool
    inputs: Tuple[str, ...]  # earlier stages or BATCH_INPUTS
    description: str

    @property
    def patch_shaped(self) -> bool:
        """True for (B, C|K, N, N) stages: per-patch statistics apply."""
        return len(self.shape) == 4 and self.shape[2:] == ("N", "N")

    @property
    def spatial(self) -> bool:
        """True for stages that end in two image axes (patch grids, canvas, probe)."""
        return len(self.shape) >= 2 and self.shape[-2:] in (("N", "N"), ("M", "M"))

    def concrete_shape(self, *, B: int, C: int, K: int, N: int, M: int, n: int) -> Tuple[int, ...]:
        sizes = {"B": B, "C": C, "K": K, "N": N, "M": M, "L": 128 * n, "8": 8}
        return tuple(sizes[s] for s in self.shape)


STAGES: Tuple[Stage, ...] = (
    Stage("input_scaled", ("B", "C", "N", "N"), False, ("diffraction",), "network input Xs / s"),
    Stage("latent", ("B", "L", "8", "8"), False, ("input_scaled",), "encoder bottleneck"),
    Stage("amp", ("B", "K", "N", "N"), False, ("latent",), "amplitude head"),
    Stage("phase", ("B", "K", "N", "N"), False, ("latent",), "phase head, pi * tanh"),
    Stage("object_patches", ("B", "K", "N", "N"), True, ("amp", "phase"), "A cos(phi) + i A sin(phi)"),
    Stage("canvas", ("B", "M", "M"), True, ("object_patches", "offsets"), "merged (or padded) object"),
    Stage("trimmed_object", ("B", "N", "N"), True, ("canvas",), "centre N x N crop of the canvas"),
    Stage("extracted_patches", ("B", "C", "N", "N"), True, ("canvas", "offsets"), "patches cut at +offsets"),
    Stage("probe", ("N", "N"), True, ("probe_raw",), "normalised probe"),
    Stage("exit_wave", ("B", "C", "N", "N"), True, ("extracted_patches", "probe"), "probe * patch (+smooth, mask)"),
    Stage("far_field_amp", ("B", "C", "N", "N"), False, ("exit_wave",), "fftshift(|FFT2(psi)|) / N"),
    Stage("pred_amp", ("B", "C", "N", "N"), False, ("far_field_amp",), "s * far_field_amp"),
    Stage("pred_intensity", ("B", "C", "N", "N"), False, ("pred_amp",), "pred_amp ** 2"),
    Stage("loss_nll", (), False, ("pred_intensity", "diffraction"), "mean(I - Xs^2 log I)"),
    Stage("loss_mae", (), False, ("pred_amp", "diffraction"), "mean(|pred_amp - Xs|)"),
)

STAGE_NAMES: Tuple[str, ...] = tuple(s.name for s in STAGES)
BY_NAME: Dict[str, Stage] = {s.name: s for s in STAGES}


def get(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; known stages are {list(STAGE_NAMES)}") from None


class StageList:
    """The ordered stages of one pair (pipeline order): what the comparator, the captures and
    the tolerance table of that pair accept. :data:`BUILTIN` is the built-in pair's."""

    def __init__(self, stages: Iterable[Stage]):
        self.stages: Tuple[Stage, ...] = tuple(stages)
        self.names: Tuple[str, ...] = tuple(s.name for s in self.stages)
        self.by_name: Dict[str, Stage] = {s.name: s for s in self.stages}
        if len(self.by_name) != len(self.stages):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"stage list names {dup} more than once")
        clash = sorted(set(self.names) & set(BATCH_INPUTS))
        if clash:
            raise ValueError(f"stage names {clash} are batch inputs; choose other names")

    def get(self, name: str) -> Stage:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"unknown stage {name!r}; known stages are {list(self.names)}") from None

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def __contains__(self, name: object) -> bool:
        return name in self.by_name


BUILTIN = StageList(STAGES)


def stage_list(stages: Union[None, StageList, Sequence[Stage]] = None) -> StageList:
    """``None`` -> the built-in list; a StageList as given; a sequence of Stage -> a StageList."""
    if stages is None:
        return BUILTIN
    return stages if isinstance(stages, StageList) else StageList(stages)


def expected_shapes(config, batch: int) -> Dict[str, Tuple[int, ...]]:
    """Concrete canonical shape of every stage for a model config and batch size B."""
    dims = dict(B=batch, C=config.C, K=config.K, N=config.N, M=config.M, n=config.n_filters_scale)
    return {s.name: s.concrete_shape(**dims) for s in STAGES}
