"""Training-step parity, measured: per case and dtype, K Adam steps on both sides of the built-in
pair (parity.training.train_case, each side in its worker), the loss curves' largest relative
difference, the worst weight error after step 1 and step K, the worst noise-floor margin, and
the time of the steps per side (median over repeats; the time inside the side's train_steps,
without framework import and model build).

    python -m benchmarks.training --cases n64_g2,n64_g1 --dtypes float32,float64 --steps 1,20 --repeats 1
"""
from __future__ import annotations

import argparse
import json
import time

from benchmarks.common import summarize


def measure(cases, dtypes, steps, repeats, batches="seeded:20"):
    from parity import training
    from parity.pool import WorkerPool

    rows = []
    with WorkerPool() as pool:
        for case in cases:
            for dtype in dtypes:
                for k in steps:
                    times, res = {}, None
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        res = training.train_case(case, steps=k, dtype=dtype, batches=batches, pool=pool).result
                        wall = time.perf_counter() - t0
                        for role, s in res.timings.items():
                            times.setdefault(role, []).append(s)
                        times.setdefault("wall_s", []).append(wall)
                    per = res.per_step()
                    rows.append({"case": case, "dtype": dtype, "steps": k, "verdict": res.verdict,
                                 "max_loss_rel_diff": float(res.loss_rel_diff.max()),
                                 "step1": {"layer": per[0]["worst_layer"], "rel_update": per[0]["rel_update"],
                                           "worst_rel_update": max(e["rel_update"][0] for e in res.layers.values())},
                                 "stepK": {"layer": per[-1]["worst_layer"], "rel_update": per[-1]["rel_update"],
                                           "worst_rel_update": max(e["rel_update"][-1] for e in res.layers.values())},
                                 "worst_margin": max(r["margin"] for r in per),
                                 "first_divergent_step": res.first_divergent_step,
                                 "times": {role: summarize(v) for role, v in times.items()}})
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="n64_g2")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--steps", default="1,20")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    rows = measure(args.cases.split(","), args.dtypes.split(","), [int(s) for s in args.steps.split(",")],
                   args.repeats)
    print("case dtype K verdict max_loss_rel_diff worst_w_err_step1 worst_w_err_stepK worst_margin "
          "median_train_s(ref64|ref32|cand)")
    for r in rows:
        t = r["times"]
        med = "|".join(f"{t[k]['median']:.2f}" if k in t else "-" for k in
                       ("reference_train_s", "reference_float32_train_s", "candidate_train_s"))
        print(f"{r['case']} {r['dtype']} {r['steps']} {r['verdict']} {r['max_loss_rel_diff']:.3g} "
              f"{r['step1']['worst_rel_update']:.3g} {r['stepK']['worst_rel_update']:.3g} {r['worst_margin']:.3g} {med}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
