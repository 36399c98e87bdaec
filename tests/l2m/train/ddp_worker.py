"""Run a tiny stage-2 training (2 steps, global batch 4) single-process or under torchrun; used by test_loop.py.

Usage: python ddp_worker.py OUT_DIR [DATA_SEED]   (or: torchrun --standalone --nproc_per_node 2 ddp_worker.py OUT_DIR)
DATA_SEED (default 0) changes the textures only: the control run of test_loop.py's DDP test.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import PlanePairs  # noqa: E402

from l2m.train.loop import train  # noqa: E402
from l2m.train.stage2 import Stage2Task  # noqa: E402

TASK = {"resolution": [64, 64], "hflip": 0.0, "freeze_bn": True, "lr_decoder": 1e-4, "lr_encoder": 1e-5}
LOOP = {"steps": 2, "batch_size": 4, "grad_clip": 1.0, "log_every": 1, "checkpoint_every": 1, "val_every": 0,
        "tensorboard": False, "lr_milestones": [], "threads": 1, "device": "cpu"}


def main(out: str, data_seed: int = 0) -> None:
    torch.set_num_threads(1)
    ds = PlanePairs(8, 64, seed=data_seed, same_geometry=True)
    train(Stage2Task(TASK, LOOP["batch_size"], (ds, ds)), {**LOOP, "output_dir": out})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
