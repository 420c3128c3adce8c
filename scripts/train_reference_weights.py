"""Train the reference for a few hundred steps on synthetic data and store the weight set.

    python scripts/train_reference_weights.py [--steps 300] [--out parity/data/fixtures/weights/n64_g2_n1_trained.npz]

Data: 256 synthetic groups (parity.synthetic, seed 9001, disjoint from every fixture seed),
N=64, gridsize 2, integer offsets, default disk probe; weights start from Glorot seed 0.
"""
import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from parity import synthetic  # noqa: E402
from reference_tf import ForwardModel, ModelConfig  # noqa: E402
from reference_tf.train import train  # noqa: E402
from reference_tf.weights import save_weights_npz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "parity" / "data" / "fixtures" / "weights" / "n64_g2_n1_trained.npz")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = ModelConfig(N=64, gridsize=2, n_filters_scale=1)
    arrays, _ = synthetic.make_batch(N=64, gridsize=2, B=256, seed=9001, offsets_kind="integer", probe_kind="disk")
    diffraction = cfg.scale * np.transpose(arrays["X"], (0, 2, 3, 1)).astype(np.float32)
    model = ForwardModel(cfg, seed=0)
    info = train(model, diffraction, arrays["offsets"], arrays["probe_raw"], steps=args.steps, seed=0)
    weights = {k: v.astype(np.float32) for k, v in model.export_weights().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_weights_npz(args.out, weights)
    meta = {"config": cfg.to_dict(), "data_seed": 9001, "groups": 256, "init_seed": 0, **info}
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
