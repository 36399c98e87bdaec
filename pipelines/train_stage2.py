"""Train L2M stage 2 (matching decoder on data-engine pairs, RoMa losses).

    python pipelines/train_stage2.py --preset stage2_tiny_cpu --output runs/stage2 --images DIR [--resume] [k=v ...]
    torchrun --nproc_per_node N pipelines/train_stage2.py --preset <gpu preset> --output runs/stage2 --images DIR

Presets: pipelines/configs/stage2_*.json (documented inside). Details: l2m/train/cli.py, l2m/train/stage2.py.
"""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from l2m.train.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(2, sys.argv[1:]))
