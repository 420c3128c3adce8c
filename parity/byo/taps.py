"""Tap declarations: where each stage of a user's model is read, without touching its code.

One :class:`Tap` per stage, in a side's ``taps`` mapping (stage name -> tap):

* :func:`layer` (Keras): the output of a named layer (``index``: one output of a multi-output
  layer, or a tuple of them);
* :func:`module` (torch): the output of a submodule by dotted path (a forward hook);
  :func:`module_input`: one of its inputs (a forward pre-hook; ``index`` a position or keyword);
* :func:`function` (any framework): a module-level function by dotted path, wrapped for the
  duration of one forward: its return value (``index`` for a tuple) or one of its arguments
  (``arg``); ``also``: the modules that imported it by name (``from helpers import merge``),
  patched too;
* :func:`derived`: computed by the harness from other stages (or batch inputs) of the same side
  by a NumPy function of the stage's inputs, in the order the pair's stage list gives them.

Every tap takes a ``layout`` (:mod:`parity.byo.layouts`) and, where the target runs more than
once per forward, ``call`` (1 = the first call). Teacher forcing (``force``, default True)
feeds the reference's values of the stage's inputs to the tapped target: a module's or a
function's arguments (``feed``: which argument each input goes to, default the first ones in
order), or, for an input tap, the values of the input stages where they are produced. NumPy
only: the sides in :mod:`parity.sides` carry the taps out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple, Union

from .layouts import Layout, describe, layout as as_layout

Index = Union[None, int, str, Tuple[int, ...]]
KINDS = ("layer", "layer_input", "module", "module_input", "function", "function_arg", "derived")


@dataclass(frozen=True)
class Tap:
    kind: str
    target: str = ""  # layer name, module path or dotted function path ("" for derived)
    index: Index = None
    layout: Layout = ()
    call: Optional[int] = None
    also: Tuple[str, ...] = ()
    feed: Optional[Tuple[Union[int, str], ...]] = None
    force: bool = True
    reason: str = ""  # why the stage is not teacher-forced (force=False)
    fn: Optional[Callable[..., Any]] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"tap kind {self.kind!r}; expected one of {list(KINDS)}")
        if self.call is not None and (isinstance(self.call, bool) or not isinstance(self.call, int) or self.call < 1):
            raise ValueError(f"call={self.call!r}: the call to capture is a number from 1 (the first call)")
        if self.kind == "derived" and not callable(self.fn):
            raise ValueError("derived(fn): fn must be callable")

    @property
    def derived(self) -> bool:
        return self.kind == "derived"

    @property
    def reads_input(self) -> bool:
        """The stage is an input of the target (it is produced before the target runs)."""
        return self.kind in ("module_input", "function_arg")

    def describe(self) -> str:
        if self.derived:
            return f"derived by {getattr(self.fn, '__name__', 'a function')}"
        what = {"layer": "output of layer", "layer_input": "input of layer", "module": "output of module", "module_input": "input of module",
                "function": "return value of function", "function_arg": "argument of function"}[self.kind]
        idx = "" if self.index is None else f" [{self.index}]"
        call = "" if self.call is None else f" (call {self.call})"
        return f"{what} {self.target}{idx}{call}"

    def to_dict(self) -> dict:
        return {"tap": self.describe(), "kind": self.kind, "derived": self.derived, "layout": describe(self.layout),
                "forced": self.force}


def _index(index: Any, what: str) -> Index:
    if index is None or isinstance(index, str):
        return index
    if isinstance(index, bool):
        raise ValueError(f"{what}: index must be an int, a str or a tuple of ints, got {index!r}")
    if isinstance(index, int):
        return index
    if isinstance(index, (tuple, list)) and index and all(isinstance(i, int) and not isinstance(i, bool)
                                                          for i in index):
        return tuple(index)
    raise ValueError(f"{what}: index must be an int, a str or a tuple of ints, got {index!r}")


def _feed(feed: Any) -> Optional[Tuple[Union[int, str], ...]]:
    if feed is None:
        return None
    feed = (feed,) if isinstance(feed, (int, str)) else tuple(feed)
    if not all(isinstance(f, (int, str)) and not isinstance(f, bool) for f in feed):
        raise ValueError(f"feed={feed!r}: one argument position (int) or keyword (str) per stage input")
    return feed


def _name(target: Any, what: str) -> str:
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"{what} needs a name, got {target!r}")
    return target.strip()


#: ``Tap.feed`` of a layer tap whose layer takes its inputs as a list, even a single one.
AS_LIST = ("as_list",)
#: ``feed=AT_INPUTS`` (module and function output taps): teacher forcing puts the reference's
#: value of each input stage where that stage is produced (at its own tap) and reruns the
#: forward, instead of feeding the target's arguments; for a stage computed inline, in code no
#: tap can feed, from stages that are tapped.
AT_INPUTS = ("@inputs",)


def layer(name: str, index: Any = None, *, layout: Any = None, call: Optional[int] = None, force: bool = True,
          reason: str = "", as_list: bool = False) -> Tap:
    """The output of the Keras layer ``name`` (``index``: which output of a multi-output layer).
    ``as_list``: teacher forcing calls the layer with a list of the stage's inputs even when
    there is one (a layer whose ``call`` unpacks ``x, = inputs``)."""
    return Tap("layer", _name(name, "layer()"), _index(index, "layer()"), as_layout(layout), call,
               feed=AS_LIST if as_list else None, force=force, reason=reason)


def layer_input(name: str, index: int = 0, *, layout: Any = None, call: Optional[int] = None,
                reason: str = "") -> Tap:
    """Input ``index`` of the Keras layer ``name``: for a value that no named layer outputs (an
    operator such as ``x1 + x2`` in a functional model). Not teacher-forced: nothing in a Keras
    graph can be replaced where it is produced."""
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(f"layer_input({name!r}, index={index!r}): the index is an input position (0, 1, ...)")
    return Tap("layer_input", _name(name, "layer_input()"), index, as_layout(layout), call, force=False,
               reason=reason or f"input {index} of Keras layer {name!r}: a Keras graph has nowhere to put another "
                                f"value of it")


def module(path: str, index: Any = None, *, layout: Any = None, call: Optional[int] = None, feed: Any = None,
           force: bool = True, reason: str = "") -> Tap:
    """The output of the torch submodule at dotted ``path`` (``""``: the whole model)."""
    if not isinstance(path, str):
        raise ValueError(f"module() needs a dotted module path, got {path!r}")
    return Tap("module", path.strip(), _index(index, "module()"), as_layout(layout), call, feed=_feed(feed),
               force=force, reason=reason)


def module_input(path: str, index: Union[int, str] = 0, *, layout: Any = None, call: Optional[int] = None,
                 force: bool = True, reason: str = "") -> Tap:
    """Input ``index`` (a position, or a keyword) of the torch submodule at ``path``."""
    if not isinstance(index, (int, str)) or isinstance(index, bool):
        raise ValueError(f"module_input(): index is an argument position or keyword, got {index!r}")
    return Tap("module_input", _name(path, "module_input()"), index, as_layout(layout), call, force=force,
               reason=reason)


def function(path: str, index: Any = None, *, arg: Union[None, int, str] = None, also: Any = (),
             layout: Any = None, call: Optional[int] = None, feed: Any = None, force: bool = True,
             reason: str = "") -> Tap:
    """The function at dotted ``path`` (``pkg.helpers.merge``): its return value (``index`` for a
    tuple), or its argument ``arg`` (a position or keyword). ``also``: modules that imported it
    by name (``"pkg.model"``, or ``"pkg.model:alias"`` for ``import ... as alias``)."""
    path = _name(path, "function()")
    if "." not in path:
        raise ValueError(f"function({path!r}) needs a dotted path: module.function")
    also = (also,) if isinstance(also, str) else tuple(also)
    if arg is not None:
        if index is not None:
            raise ValueError("function(): give index= (of the return value) or arg= (an argument), not both")
        if not isinstance(arg, (int, str)) or isinstance(arg, bool):
            raise ValueError(f"function(): arg is an argument position or keyword, got {arg!r}")
        return Tap("function_arg", path, arg, as_layout(layout), call, also, force=force, reason=reason)
    return Tap("function", path, _index(index, "function()"), as_layout(layout), call, also, feed=_feed(feed),
               force=force, reason=reason)


def derived(fn: Callable[..., Any]) -> Tap:
    """A stage the harness computes with ``fn`` (NumPy arrays in, one array out) from the
    stage's inputs, in the order the pair's stage list gives them."""
    return Tap("derived", "", fn=fn)


# --------------------------------------------------------------------------- derived helpers
def square(x):
    """x ** 2."""
    return x * x


def crop(size: int) -> Callable[[Any], Any]:
    """The centre ``size`` x ``size`` crop of the last two axes."""

    def centre_crop(x):
        h, w = x.shape[-2:]
        if size > min(h, w):
            raise ValueError(f"crop({size}) of an array of shape {x.shape}")
        top, left = (h - size) // 2, (w - size) // 2
        return x[..., top:top + size, left:left + size]

    centre_crop.__name__ = f"crop({size})"
    return centre_crop


__all__ = ["KINDS", "Tap", "crop", "derived", "function", "layer", "layer_input", "module", "module_input",
           "square"]
