"""Overhead of taps on a forward pass: the example pair's models with and without them.

For each size and each side, in one process, interleaved round by round (so both see the same
machine load): ``plain``, the model's own forward (torch: ``net(x)`` under ``no_grad``; Keras:
``model(x, training=False)``); ``hooks``, the same forward with every tap of the side installed
and capturing (torch: forward hooks, pre-hooks and the function wrapper; Keras: the tap
sub-model over the tapped layers); ``forward``, the whole ``side.forward`` (taps, captures to
NumPy, layouts, derived stages). Each figure is the median of ``--repeats`` rounds after
``--warmup`` discarded ones.

    .venv/bin/python -m benchmarks.taps                          # tiny (the example's case) and larger
    .venv/bin/python -m benchmarks.taps --sizes 16x2x8x2 --repeats 51 --threads 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

from .common import summarize, table

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the harness's workers (parity.pool.worker_env)

#: size x channels x features x batch: the example's tiny case, then a larger model.
DEFAULT_SIZES = ("16x2x8x2", "64x4x32x8")


def parse_size(spec: str) -> Dict[str, int]:
    try:
        n, c, f, b = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--sizes: {spec!r} must be NxCxFxB (size, channels, features, batch)") from None
    return {"size": n, "channels": c, "features": f, "batch": b}


def _timer(fn: Callable[[], Any]) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return run


def variants(side_cls, config: Dict[str, int], batch: int) -> Dict[str, Callable[[], float]]:
    """name -> a function timing one forward pass of that variant."""
    from examples.example_pair import data
    from parity.sides.function_taps import FunctionPatches
    from parity.sides.declared import _GROUP, _label

    side = side_cls()
    inputs = data.inputs(config, 0, batch)
    model = side.build(config, data.weights(config, 0), "float32", "cpu")
    native = [side._tensor(model, side._cast(model, np.transpose(inputs["image"], (0, 2, 3, 1))
                                             if side.framework == "tensorflow" else inputs["image"]))]

    def hooked() -> None:
        rec = side._recorder()
        for name, tap in side.taps.items():
            if tap.kind in _GROUP:
                rec.capture(_GROUP[tap.kind], tap.target, _label(tap), name, reads_input=tap.reads_input,
                            index=tap.index, call=tap.call)
        also = {t.target: t.also for t in side.taps.values() if _GROUP.get(t.kind) == "function"}
        with FunctionPatches(rec.group("function"), also, {}):
            side._call(model, native, rec)

    if side.framework == "torch":
        import torch

        def plain() -> None:
            with torch.no_grad():
                model.net(*native)
    else:
        def plain() -> None:
            model.net(native[0], training=False)

    return {"plain": _timer(plain), "hooks": _timer(hooked), "forward": _timer(lambda: side.forward(model, inputs))}


def measure(sizes: Sequence[str], repeats: int, warmup: int, log=print) -> List[Dict[str, Any]]:
    from examples.example_pair.declaration import KerasReference, TorchPort

    rows = []
    for spec in sizes:
        dims = parse_size(spec)
        batch = dims.pop("batch")
        for side_cls in (TorchPort, KerasReference):
            runs = variants(side_cls, dims, batch)
            times: Dict[str, List[float]] = {k: [] for k in runs}
            for i in range(warmup + repeats):
                for name, run in runs.items():
                    t = run()
                    if i >= warmup:
                        times[name].append(t)
            stats = {k: summarize(v) for k, v in times.items()}
            rows.append({"size": spec, "side": side_cls.name, **stats})
            log(f"  {spec} {side_cls.name}: done", file=sys.stderr)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.taps", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=",".join(DEFAULT_SIZES), help="comma-separated NxCxFxB")
    p.add_argument("--repeats", type=int, default=31)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of both frameworks (default 1)")
    args = p.parse_args(argv)
    if args.threads:
        import tensorflow as tf
        import torch

        torch.set_num_threads(args.threads)
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    rows = measure([s for s in args.sizes.split(",") if s], args.repeats, args.warmup,
                   log=lambda *a, **k: print(*a, **k))
    ms = lambda s: f"{1e3 * s['median']:.3f}"  # noqa: E731
    body = [[r["size"], r["side"], ms(r["plain"]), ms(r["hooks"]), ms(r["forward"]),
             f"{1e3 * (r['hooks']['median'] - r['plain']['median']):+.3f}",
             f"{r['hooks']['median'] / r['plain']['median']:.2f}",
             f"{r['forward']['median'] / r['plain']['median']:.2f}"] for r in rows]
    print(f"median of {args.repeats} rounds (after {args.warmup} warm-up), ms per forward pass")
    print(table(body, ["NxCxFxB", "side", "plain", "hooks", "side.forward", "hooks-plain", "hooks/plain",
                       "side/plain"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
