"""Train L2M stage 1 (3D-aware coarse encoder from single images lifted to feature Gaussians).

    python pipelines/train_stage1.py --preset stage1_tiny_cpu --output runs/stage1 --images DIR [--resume] [k=v ...]
    torchrun --nproc_per_node N pipelines/train_stage1.py --preset <gpu preset> --output runs/stage1 --images DIR

Presets: pipelines/configs/stage1_*.json (documented inside). Details: l2m/train/cli.py, l2m/train/stage1.py.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from l2m.train.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(1, sys.argv[1:]))
