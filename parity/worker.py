"""The worker process of :mod:`parity.pool`: ``python -m parity.worker --serve``.

Requests arrive on stdin, one JSON object a line; answers go to the original stdout, one JSON
object a line; anything a library prints goes to stderr (the pool's log of this worker).

* start-up: ``{"event": "ready", "pid": ...}``;
* ``{"op": "run", "dir": JOB_DIR}``: run the job folder written by
  :func:`parity.pool.write_job` through :func:`parity.jobs.execute` (the same code as in the
  parent's process) and write ``capture.npz`` (and ``local.npz``, and a backward job's
  ``gradients.npz``); answer ``{"event": "done",
  "code": 0|2|3, "seconds": ..., "peak_rss_bytes": ...}``. On code 2 (an error) or 3 (the side
  is not installed) ``error.txt`` holds one line for the parent;
* ``{"op": "devices", "side": NAME, "target": "module:Class"}``: answer ``{"event": "devices",
  "devices": {...}}`` (or ``"error"``);
* end of input: exit.

Weight sets are read once per digest and kept (the parent writes each set once). Why workers:
TensorFlow's and PyTorch's thread pools compete when both live in one process (measured: the
port's forward went from 22 ms alone to 0.1-1.8 s after TensorFlow ran in the same process, on
2 cores), some builds of the two crash when imported together, and a side with global state
gets a clean process.

``python -m parity.worker JOB_DIR`` runs one job folder and exits with the code above.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict

import numpy as np

from .capture import load_capture, save_capture
from .jobs import Job, execute
from .sides import SideUnavailable

_WEIGHTS: "OrderedDict[str, Dict[str, np.ndarray]]" = OrderedDict()


def _load_npz(path: Path) -> Dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _weights(meta: Dict[str, Any]) -> Dict[str, np.ndarray]:
    wid = meta["weights_id"]
    if wid not in _WEIGHTS:
        _WEIGHTS[wid] = _load_npz(Path(meta["weights_file"]))
        while len(_WEIGHTS) > 4:
            _WEIGHTS.popitem(last=False)
    return _WEIGHTS[wid]


def read_job(directory: Path) -> Job:
    meta = json.loads((directory / "job.json").read_text())
    teacher = teacher_gradients = None
    if meta.get("teacher_file"):
        teacher = load_capture(meta["teacher_file"]).stages
    if meta.get("teacher_gradients_file"):
        teacher_gradients = _load_npz(Path(meta["teacher_gradients_file"]))
    return Job(
        side=meta["side"], target=meta["target"], config=meta["config"], weights=_weights(meta),
        inputs=_load_npz(Path(meta.get("inputs_file") or directory / "inputs.npz")), dtype=meta["dtype"], device=meta["device"], case=meta["case"],
        teacher=teacher, repeats=meta["repeats"], faults=tuple(meta.get("faults", ())),
        allow_tf32=bool(meta.get("allow_tf32", False)),
        graph=tuple((name, tuple(inputs)) for name, inputs in meta["graph"]),
        weights_id=meta["weights_id"], label=meta.get("label", ""),
        task=meta.get("task", "forward"), train=dict(meta.get("train") or {}),
        losses=tuple(meta.get("losses", ())), teacher_gradients=teacher_gradients,
    )


def run_job_dir(directory: Path) -> int:
    """Run one job folder; 0 ok, 2 error, 3 side not installed (error.txt holds one line)."""
    try:
        result = execute(read_job(directory))
        if result.crash is not None:
            result.capture.meta["crash"] = result.crash
        save_capture(directory / "capture.npz", result.capture, compress=False)  # a local hand-over
        if result.local is not None:
            np.savez(directory / "local.npz", **result.local)
        if result.gradients is not None:
            np.savez(directory / "gradients.npz", **result.gradients)
        return 0
    except SideUnavailable as exc:
        (directory / "error.txt").write_text(str(exc))
        return 3
    except Exception as exc:  # one clear line to the parent, the full trace on stderr
        (directory / "error.txt").write_text(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 2


def peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _answer(out, **msg) -> None:
    out.write(json.dumps(msg) + "\n")
    out.flush()


def serve(run=run_job_dir, setup=None) -> int:
    """Answer requests from stdin on the original stdout; library output goes to stderr.

    ``run``: the function that runs one job folder; ``setup``: called first (after stdout is
    redirected), its dict joins the ready line (benchmarks pin threads and time the import)."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    ready = setup() if setup is not None else {}
    _answer(answers, event="ready", pid=os.getpid(), **(ready or {}))
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        if req["op"] == "run":
            t0 = time.perf_counter()
            code = run(Path(req["dir"]))
            _answer(answers, event="done", code=code, seconds=time.perf_counter() - t0,
                    peak_rss_bytes=peak_rss_bytes())
        elif req["op"] == "devices":
            try:
                from .sides import load_side_class

                _answer(answers, event="devices", devices=load_side_class(req["target"])().devices())
            except Exception as exc:  # noqa: BLE001 - a side that cannot be imported sees no device
                _answer(answers, event="devices", error=f"{type(exc).__name__}: {exc}")
        else:
            _answer(answers, event="error", error=f"unknown request {req['op']!r}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--serve":
        return serve()
    if len(argv) != 1:
        print("usage: python -m parity.worker JOB_DIR | --serve", file=sys.stderr)
        return 2
    return run_job_dir(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
