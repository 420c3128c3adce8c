"""Declared sides: a user's unmodified model, tapped from outside as its class attributes say.

:class:`DeclaredSide` is what :class:`parity.sides.byo_torch.TorchSide` and
:class:`parity.sides.byo_keras.KerasSide` share; a user subclasses one of those and sets

* ``name``: the registry name; ``stage_list``: the pair's stages (:class:`parity.stages.Stage`);
* ``model``: ``"package.module:callable"`` (or the callable) that builds the model from the
  case config's fields as keyword arguments;
* ``inputs``: the batch inputs the model is called with, in order (``{"image": NHWC}`` gives
  each its layout);
* ``taps``: stage name -> :class:`parity.byo.taps.Tap`, one per stage of ``stage_list``;
* ``weights``: a :class:`parity.byo.weights.WeightMap` (default: by name).

The declaration is checked when the class is created (every stage tapped, tap kinds the
framework has, stage inputs earlier in the list), the targets when the model is built (close
names listed for a typo), the captures after every forward (never ran, ran twice, a layout that
does not fit). A derived stage is computed here, in NumPy, from the side's other stages.

Teacher forcing (:meth:`run_stage`) runs the model's forward once more per stage, with the
reference's values put in where the stage's inputs enter the tapped target (see
:mod:`parity.byo.taps`); a stage that cannot be forced raises :class:`NotForced`, whose
reason the job records as the stage's local error (``local_errors`` in the capture meta).
Framework imports happen in the subclasses' methods only.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..byo.layouts import LayoutError, describe, layout as as_layout, to_canonical, to_native
from ..byo.taps import AT_INPUTS, Tap
from ..byo.weights import WeightMap
from ..stages import Stage, StageList
from .base import ForwardError, Side
from .function_taps import FunctionPatches, import_hint
from .tap_points import Recorder, TapError


class DeclarationError(ValueError):
    """A side declaration that cannot work (found when the class is created)."""


class NotForced(RuntimeError):
    """A stage this side cannot compute from the reference's inputs; the message says why."""


_GROUP = {"module": "module", "module_input": "module", "function": "function", "function_arg": "function"}


def _label(tap: Tap) -> str:
    return f"module {tap.target!r}" if _GROUP.get(tap.kind) == "module" else f"function {tap.target}"


@dataclass
class Built:
    """What build() returns: the user's model and how it was built."""

    net: Any
    dtype: str
    device: str
    config: Dict[str, Any]
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def real(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def complex(self) -> np.dtype:
        return np.dtype("complex64" if self.dtype == "float32" else "complex128")


def _close(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    return f" (close names: {', '.join(close)})" if close else ""


class DeclaredSide(Side):
    stage_list: Tuple[Stage, ...] = ()
    taps: Mapping[str, Tap] = {}
    inputs: Any = ()
    model: Any = ""
    weights: WeightMap = WeightMap.by_name()
    TAP_KINDS: Tuple[str, ...] = ()
    _input_layouts: Dict[str, Tuple] = {}
    supports_gradients = False
    gradients_unavailable = ("a declared side (parity.byo) taps stage values, not gradients: it would need the loss "
                             "computed by the model (not derived by the harness), the adjoint of each stage's layout "
                             "and of each weight-map transform; backward parity is not available for it")

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if inspect.isfunction(cls.__dict__.get("model")):
            cls.model = staticmethod(cls.__dict__["model"])
        if cls.name:  # a concrete side (intermediate bases leave name empty)
            _validate(cls)

    # ------------------------------------------------------------ framework parts (subclasses)
    def _make(self, factory: Callable[..., Any], config: Dict[str, Any], dtype: str, device: str) -> Any:
        raise NotImplementedError

    def _targets(self, net: Any) -> Tuple[Dict[str, Tuple[int, ...]], List[str]]:
        raise NotImplementedError

    def _set_weights(self, net: Any, arrays: Dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _prepare(self, built: Built) -> None:
        """Check the taps' targets against the built model (and build what the forward needs)."""

    def _tensor(self, built: Built, array: np.ndarray) -> Any:
        raise NotImplementedError

    def _numpy(self, value: Any) -> Any:
        raise NotImplementedError

    def _call(self, built: Built, native: List[Any], rec: Recorder) -> Dict[str, Any]:
        """Run the model on ``native`` inputs with the recorder's module points installed;
        return the stages the framework captures itself (Keras layer outputs)."""
        raise NotImplementedError

    def _force_layer(self, built: Built, name: str, tap: Tap, fed: List[Any]) -> Any:
        raise NotForced(f"stage {name!r}: a {tap.kind} tap cannot be fed on a {self.framework} side")

    def _skip_dirs(self) -> Tuple[str, ...]:
        return ()

    def _snapshot(self, value: Any) -> Any:
        return value

    def _stale(self, values: Dict[str, Any]) -> bool:
        """Whether a captured value was overwritten after its capture (torch: in place)."""
        return False

    _copying = False  # snapshots copy what they capture (the second run of a forward found stale)

    # ------------------------------------------------------------ hooks a declaration may override
    @classmethod
    def taps_for(cls, config: Dict[str, Any]) -> Mapping[str, Tap]:
        """The taps of a model built from ``config`` (default: the class's ``taps``); override
        where a target's name depends on the config (a layer named by its creation order).
        The result must tap the same stages, with the same kinds and layouts' meaning."""
        return cls.taps

    @classmethod
    def weights_for(cls, config: Dict[str, Any]) -> WeightMap:
        """The weight map of a model built from ``config`` (default: the class's ``weights``)."""
        return cls.weights

    def before_forward(self, net: Any, batch: Mapping[str, np.ndarray], config: Dict[str, Any]) -> None:
        """Called before every forward of ``net`` (teacher-forced reruns included) with the
        canonical batch: the place for batch inputs that are model state rather than call
        arguments (a probe held in a variable) and for global state the model reads while it
        runs. Batch inputs not named in ``inputs`` reach the model only through here."""

    # ------------------------------------------------------------ the Side contract
    def build(self, config, weights, dtype, device):
        factory = _factory(self)
        config = dict(config)
        taps = dict(self.taps_for(config))
        if list(taps) != list(type(self).taps) or any(taps[n].kind != t.kind for n, t in type(self).taps.items()):
            raise DeclarationError(f"side {self.name}: taps_for() must tap the stages {list(type(self).taps)} "
                                   f"with the kinds the class declares")
        net = self._make(factory, config, dtype, device)
        targets, required = self._targets(net)
        wmap = self.weights_for(config)
        if not isinstance(wmap, WeightMap):
            raise DeclarationError(f"side {self.name}: weights_for() must return a parity.byo.WeightMap, got {wmap!r}")
        self._set_weights(net, wmap.transfer(weights, targets, side=self.name, required=required))
        built = Built(net, dtype, device, config, {"side_taps": taps})
        self._use(built)
        self._prepare(built)
        return built

    def _use(self, built: Built) -> None:
        """Make ``built``'s taps this side's (a worker may hold models of several configs)."""
        self.taps = built.extra.get("side_taps", type(self).taps)

    def capture_meta(self) -> Dict[str, Any]:
        return {"taps": {name: tap.to_dict() for name, tap in self.taps.items()},
                "derived": [name for name, tap in self.taps.items() if tap.derived]}

    def forward(self, model: Built, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self._use(model)
        self._batch = dict(inputs)
        rec = self._recorder()
        for name, tap in self.taps.items():
            if tap.kind in _GROUP:
                rec.capture(_GROUP[tap.kind], tap.target, _label(tap), name, reads_input=tap.reads_input,
                            index=tap.index, call=tap.call)
        try:
            raw = self._run(model, inputs, rec, [n for n, t in self.taps.items() if t.kind in _GROUP])
        except _Failed as failed:
            done = self._partial(model, failed.raw, inputs)
            raise ForwardError(f"{type(failed.exc).__name__}: {failed.exc}", done) from failed.exc
        return self._assemble(model, raw, inputs)

    def run_stage(self, model: Built, name: str, env: Mapping[str, np.ndarray]) -> np.ndarray:
        self._use(model)
        tap = self.taps[name]
        if tap.derived:
            return self._derive(model, name, {k: self._cast(model, v) for k, v in env.items()})
        if not tap.force:
            raise NotForced(f"stage {name!r} is declared force=False" + (f": {tap.reason}" if tap.reason else ""))
        if getattr(self, "_batch", None) is None:
            raise NotForced(f"stage {name!r}: teacher forcing reruns the model's forward; call forward() first")
        inputs = list(env)
        if tap.kind == "layer":
            raw = self._force_layer(model, name, tap, [self._native(model, k, env[k]) for k in inputs])
        else:
            rec = self._recorder()
            rec.capture(_GROUP[tap.kind], tap.target, _label(tap), name, reads_input=tap.reads_input,
                        index=tap.index, call=tap.call)
            batch = dict(self._batch)
            if tap.reads_input or tap.feed == AT_INPUTS:
                self._put_upstream(model, rec, name, tap, env, batch)
            else:
                feed = tap.feed if tap.feed is not None else tuple(range(len(inputs)))
                if len(feed) != len(inputs):
                    raise NotForced(f"stage {name!r}: {_label(tap)} is fed {len(inputs)} stage input(s) {inputs} "
                                    f"but feed={feed} names {len(feed)} argument(s)")
                for arg, k in zip(feed, inputs):
                    rec.put(_GROUP[tap.kind], tap.target, _label(tap), into_input=True, index=arg, call=tap.call,
                            value=self._native(model, k, env[k]))
            try:
                raw = self._run(model, batch, rec, [name])[name]
            except _Failed as failed:
                raise failed.exc
            except TapError as exc:
                raise NotForced(str(exc)) from None
        return self._finish(model, name, raw)

    # ------------------------------------------------------------ helpers
    def _recorder(self) -> Recorder:
        return Recorder(self._skip_dirs(), self._snapshot)

    def _put_upstream(self, model: Built, rec: Recorder, name: str, tap: Tap, env, batch: Dict[str, Any]) -> None:
        """Teacher forcing of an input tap: each input stage replaced where it is produced."""
        for k, value in env.items():
            if k not in self.taps:
                batch[k] = value  # a batch input
                continue
            t = self.taps[k]
            if t.kind not in _GROUP:
                what = "derived by the harness" if t.derived else f"the output of Keras layer {t.target!r}"
                raise NotForced(f"stage {name!r} is read at the input of {_label(tap)}; its input stage {k!r} is "
                                f"{what}, so there is nothing in the model to put the reference's value into")
            rec.put(_GROUP[t.kind], t.target, _label(t), into_input=t.reads_input, index=t.index, call=t.call,
                    value=self._native(model, k, value))

    def _run(self, built: Built, batch: Mapping[str, np.ndarray], rec: Recorder, wanted: List[str]) -> Dict[str, Any]:
        out = self._run_once(built, batch, rec, wanted)
        if not self._stale(out):
            return out
        rec.reset()  # an in-place operation wrote to a captured tensor: again, with copies
        self._copying = True
        try:
            return self._run_once(built, batch, rec, wanted)
        finally:
            self._copying = False

    def _run_once(self, built: Built, batch: Mapping[str, np.ndarray], rec: Recorder,
                  wanted: List[str]) -> Dict[str, Any]:
        self.before_forward(built.net, batch, built.config)
        native = [self._tensor(built, self._cast(built, to_native(k, self._input_layouts[k], batch[k], built.config)))
                  for k in self._input_layouts]
        functions = rec.group("function")
        also = {t.target: t.also for t in self.taps.values() if _GROUP.get(t.kind) == "function"}
        owner = {t.target: n for n, t in self.taps.items() if t.kind in _GROUP}
        direct: Dict[str, Any] = {}
        try:
            with FunctionPatches(functions, also, owner):
                direct = self._call(built, native, rec)
        except TapError:
            raise
        except Exception as exc:  # the user's forward raised
            raise _Failed(exc, {**rec.partial(), **direct}) from exc
        hints = {}
        for n in wanted:
            t = self.taps[n]
            if _GROUP.get(t.kind) == "function" and functions[t.target].calls == 0:
                hints[n] = import_hint(t.target, t.also)
        out = dict(direct)
        out.update(rec.collect([n for n in wanted if n not in direct], hints))
        return out

    def _cast(self, built: Built, a: Any) -> Any:
        if isinstance(a, tuple):
            return tuple(self._cast(built, x) for x in a)
        a = np.asarray(a)
        return a.astype(built.complex if a.dtype.kind == "c" else built.real, copy=False)

    def _native(self, built: Built, stage: str, value: np.ndarray) -> Any:
        """A canonical value as the model holds it: the stage's (or batch input's) layout undone."""
        steps = self.taps[stage].layout if stage in self.taps else self._input_layouts.get(stage, ())
        native = self._cast(built, to_native(stage, steps, self._cast(built, value), built.config))
        if isinstance(native, tuple):
            return tuple(self._tensor(built, x) for x in native)
        return self._tensor(built, native)

    def _finish(self, built: Built, name: str, raw: Any, sizes: Optional[Dict[str, int]] = None) -> np.ndarray:
        """A captured value -> the canonical array, checked against the stage's declared shape
        (``sizes``: what each shape symbol is in the stages finished before, e.g. B = 2)."""
        tap, stage = self.taps[name], self._stage(name)
        native = self._numpy(raw)
        arr = to_canonical(name, tap.layout, native, built.config)
        shape = tuple(np.shape(native)) if not isinstance(native, tuple) else tuple(np.shape(x) for x in native)
        where = f"the tap gave {shape}, {arr.shape} after layout {describe(tap.layout)}, but the stage is declared " \
                f"({', '.join(stage.shape)})"
        if arr.ndim != len(stage.shape):
            raise LayoutError(f"stage {name!r}: {where}; declare the layout that makes it so")
        sizes = {} if sizes is None else sizes
        for sym, n in zip(stage.shape, arr.shape):
            want = int(sym) if sym.isdigit() else sizes.setdefault(sym, n)
            if want != n:
                raise LayoutError(f"stage {name!r}: {where}: {sym} is {n} here but {want} "
                                  f"{'by declaration' if sym.isdigit() else 'elsewhere'}; declare the layout that "
                                  f"makes it so")
        if stage.complex != np.iscomplexobj(arr):
            hint = "; a (real, imag) pair needs layout COMPLEX" if stage.complex else ""
            raise LayoutError(f"stage {name!r} is declared {'complex' if stage.complex else 'real'} but the tap gave "
                              f"a {arr.dtype} array (captured {shape}, layout {describe(tap.layout)}){hint}")
        return self._cast(built, arr)

    def _derive(self, built: Built, name: str, env: Mapping[str, Any]) -> np.ndarray:
        fn = self.taps[name].fn
        try:
            out = fn(*[env[k] for k in self._stage(name).inputs])
        except Exception as exc:  # noqa: BLE001 - the user's formula, named with its stage
            raise RuntimeError(f"stage {name!r}: {getattr(fn, '__name__', 'the derived function')} raised "
                               f"{type(exc).__name__}: {exc}") from exc
        return self._cast(built, np.asarray(out))

    def _assemble(self, built: Built, raw: Mapping[str, Any], batch) -> Dict[str, np.ndarray]:
        env: Dict[str, Any] = {k: self._cast(built, v) for k, v in batch.items()}
        out: Dict[str, np.ndarray] = {}
        sizes: Dict[str, int] = {}
        for st in self.stage_list:
            out[st.name] = (self._derive(built, st.name, {**env, **out}) if self.taps[st.name].derived
                            else self._finish(built, st.name, raw[st.name], sizes))
        return out

    def _partial(self, built: Built, raw: Mapping[str, Any], batch) -> Dict[str, np.ndarray]:
        """The stages before the first one the failed forward did not produce."""
        env = {k: self._cast(built, v) for k, v in batch.items()}
        out: Dict[str, np.ndarray] = {}
        try:
            for st in self.stage_list:
                if self.taps[st.name].derived:
                    out[st.name] = self._derive(built, st.name, {**env, **out})
                elif st.name in raw:
                    out[st.name] = self._finish(built, st.name, raw[st.name])
                else:
                    break
        except Exception:  # noqa: BLE001 - the original failure is what gets reported
            pass
        return out

    @classmethod
    def _stage(cls, name: str) -> Stage:
        return next(s for s in cls.stage_list if s.name == name)


class _Failed(Exception):
    def __init__(self, exc: BaseException, raw: Dict[str, Any]):
        super().__init__(str(exc))
        self.exc, self.raw = exc, raw


def _factory(side: DeclaredSide) -> Callable[..., Any]:
    spec = type(side).model
    if callable(spec):
        return spec
    module, _, attr = str(spec).partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise DeclarationError(f"side {side.name}: model {spec!r} cannot be imported: {type(exc).__name__}: {exc}") \
            from None
    return obj


def _validate(cls: type) -> None:
    where = f"side {cls.__name__} ({cls.name!r})"
    stages = tuple(cls.stage_list)
    if not stages or not all(isinstance(s, Stage) for s in stages):
        raise DeclarationError(f"{where}: stage_list must hold the pair's stages (parity.byo.stage(...)), "
                               f"got {cls.stage_list!r}")
    try:
        StageList(stages)
    except ValueError as exc:
        raise DeclarationError(f"{where}: {exc}") from None
    names = [s.name for s in stages]
    taps = dict(cls.taps)
    problems = []
    missing = [n for n in names if n not in taps]
    if missing:
        problems.append(f"no tap for stage(s) {missing}")
    for t in taps:
        if t not in names:
            problems.append(f"a tap for {t!r}, which is not in the stage list{_close(t, names)}")
    for n, tap in taps.items():
        if not isinstance(tap, Tap):
            problems.append(f"stage {n!r}: {tap!r} is not a tap (parity.byo: layer, module, function, derived, ...)")
        elif tap.kind not in cls.TAP_KINDS:
            problems.append(f"stage {n!r}: a {tap.kind} tap does not exist on a {cls.framework} side "
                            f"(taps here: {', '.join(cls.TAP_KINDS)})")
    seen: set = set()
    for s in stages:
        later = [i for i in s.inputs if i in names and i not in seen]
        if later:
            problems.append(f"stage {s.name!r} is computed from {later}, which come(s) later in the stage list")
        seen.add(s.name)
    inputs = cls.inputs
    layouts = dict(inputs) if isinstance(inputs, Mapping) else {k: None for k in ([inputs] if isinstance(inputs, str)
                                                                                   else inputs)}
    clash = [k for k in layouts if k in names]
    if not layouts:
        problems.append("inputs names no batch input to call the model with")
    if clash:
        problems.append(f"inputs {clash} are stage names; batch inputs need names of their own")
    if not cls.model:
        problems.append("model is not set ('package.module:callable' building the model from the case config)")
    if not isinstance(cls.weights, WeightMap):
        problems.append(f"weights must be a parity.byo.WeightMap, got {cls.weights!r}")
    if problems:
        raise DeclarationError(f"{where}: " + "; ".join(problems))
    try:
        cls._input_layouts = {k: as_layout(v) for k, v in layouts.items()}
    except ValueError as exc:
        raise DeclarationError(f"{where}: inputs: {exc}") from None
    cls.stage_list = stages
    cls.taps = {n: taps[n] for n in names}  # in stage order
    cls.stages = tuple(names)


__all__ = ["Built", "DeclarationError", "DeclaredSide", "NotForced"]
