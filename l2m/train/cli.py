"""Command line shared by pipelines/train_stage1.py and pipelines/train_stage2.py.

    python pipelines/train_stage2.py --preset stage2_tiny_cpu --output runs/s2 --images DIR [--resume] [k=v ...]
    torchrun --nproc_per_node 4 pipelines/train_stage2.py --preset stage2_l2mpp_gpu --output runs/s2 ...

A preset is `pipelines/configs/<name>.json` (or any JSON file given with --conf) holding {"train": loop conf,
"task": stage conf, "doc": "..."}; `key=value` overrides address the same tree (`train.steps=100`,
`task.data.views_per_image=2`). A preset may name a `"base"` preset and list only what it changes. The
resolved config is written to OUTPUT/config.json; at the last step the trained weights are exported (stage 1:
OUTPUT/encoder.pt, stage 2: OUTPUT/matcher.pt); `--export-only` writes them from the last checkpoint of an
unfinished (e.g. time-boxed) run, or from `--checkpoint STEP`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from ..config import ConfigError, merge_conf, parse_overrides
from .loop import default_conf as loop_default_conf
from .loop import checkpoint_path, dist_info, latest_checkpoint, list_checkpoints, train

CONFIG_DIR = Path(__file__).resolve().parents[2] / "pipelines" / "configs"


def load_preset(name_or_path: str) -> dict:
    """A preset by name (pipelines/configs/<name>.json) or by path."""
    p = Path(name_or_path)
    if not p.suffix:
        p = CONFIG_DIR / f"{name_or_path}.json"
    if not p.is_file():
        known = ", ".join(sorted(q.stem for q in CONFIG_DIR.glob("*.json")))
        raise FileNotFoundError(f"Training preset {name_or_path!r} not found ({p}); known presets: {known}")
    conf = _read_json(p, "Training preset")
    conf.pop("doc", None)
    base = conf.pop("base", None)  # another preset that this one changes, e.g. a fine-tuning recipe
    return merge_conf(load_preset(base), conf, f"preset {p.stem}", strict=False) if base else conf


def run(stage: int, argv: Sequence[str] | None = None) -> int:
    """`main` for the command line: a configuration or file error is one line on stderr and exit status 2."""
    try:
        main(stage, argv)
    except (ConfigError, FileNotFoundError, NotADirectoryError, PermissionError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _read_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} {path} is not valid JSON ({e}); fix or regenerate it") from None


def main(stage: int, argv: Sequence[str] | None = None) -> Path:
    """Parse the command line, train stage `stage` (1 or 2), export the weights; returns the output folder."""
    from .stage1 import Stage1Task, task_default_conf as s1_conf
    from .stage2 import Stage2Task, default_conf as s2_conf

    ap = argparse.ArgumentParser(description=f"Train L2M stage {stage} (see pipelines/configs/*.json)")
    ap.add_argument("--preset", default=f"stage{stage}_tiny_cpu", help="preset name or JSON path")
    ap.add_argument("--output", required=True, type=Path, help="run folder (checkpoints, logs, weights)")
    ap.add_argument("--images", type=Path, help="folder of photos for the synthetic pairs (task.data.images)")
    ap.add_argument("--real-pairs", type=Path,
                    help="JSON list of real-pair sources (task.data.sfm), as pipelines/real_pairs.py writes")
    ap.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")
    ap.add_argument("--export-only", action="store_true",
                    help="write the weights of the last checkpoint in --output (no training) and exit")
    ap.add_argument("--checkpoint", type=int, metavar="STEP",
                    help="with --export-only: export OUTPUT/checkpoint_STEP.pt instead of the last one "
                         "(e.g. the step with the best validation)")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=100")
    args = ap.parse_args(argv)

    preset = load_preset(args.preset)
    over = parse_overrides(args.overrides)
    unknown = set(over) - {"train", "task"}
    if unknown:
        raise ConfigError(f"Overrides must start with train. or task., got {sorted(unknown)}")
    task_defaults = s1_conf if stage == 1 else s2_conf
    task_conf = merge_conf(task_defaults, preset.get("task"), "task")
    task_conf = merge_conf(task_conf, over.get("task"), "task")
    if args.images:
        task_conf["data"] = {**task_conf["data"], "images": str(args.images)}
    if args.real_pairs:
        task_conf["data"] = {**task_conf["data"], "sfm": _read_json(args.real_pairs, "--real-pairs file")}
    if stage == 2 and "sfm_fraction" in task_conf["data"] and not task_conf["data"].get("sfm"):
        raise ConfigError(f"Preset {args.preset} trains on real pairs: pass --real-pairs FILE "
                          "(python pipelines/real_pairs.py writes outputs/real_pairs/sources.json)")
    loop_conf = merge_conf(loop_default_conf, preset.get("train"), "train")
    loop_conf = merge_conf(loop_conf, over.get("train"), "train")
    loop_conf["output_dir"] = str(args.output)
    earlier = latest_checkpoint(args.output)
    if earlier is not None and not (args.resume or args.export_only):
        raise ConfigError(f"{args.output} holds an earlier run (latest {earlier.name}): pass --resume to continue "
                          "it, or choose a new --output (starting over here would mix its log and checkpoints)")
    if args.resume and earlier is None and dist_info()[0] == 0:
        print(f"[train] --resume: no checkpoint in {args.output} yet, starting from step 0", flush=True)

    Task = Stage1Task if stage == 1 else Stage2Task
    task = Task(task_conf, loop_conf["batch_size"])
    if args.export_only:
        import torch
        saved = args.output / "config.json"
        if saved.is_file():  # the run's own resolved config, not the preset's
            task = Task(json.loads(saved.read_text())["task"], loop_conf["batch_size"])
        ckpt = checkpoint_path(args.output, args.checkpoint) if args.checkpoint is not None \
            else latest_checkpoint(args.output)
        if ckpt is None or not ckpt.is_file():
            kept = [p.name for p in list_checkpoints(args.output)]
            raise FileNotFoundError(f"--export-only: no {ckpt.name if ckpt else 'checkpoint_*.pt'} in "
                                    f"{args.output} (kept: {', '.join(kept) or 'none'})")
        model = task.build_model()
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["model"])
        path = args.output / ("encoder.pt" if stage == 1 else "matcher.pt")
        task.export(model, path)
        print(f"[train] wrote {path} from {ckpt}", flush=True)
        return args.output
    model_holder: dict = {}
    out = train(task, loop_conf, resume=args.resume, on_finish=lambda m: model_holder.update(model=m))
    if dist_info()[0] == 0 and "model" in model_holder:
        path = out / ("encoder.pt" if stage == 1 else "matcher.pt")
        task.export(model_holder["model"], path)
        print(f"[train] wrote {path}", flush=True)
    return out
