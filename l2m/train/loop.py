"""One training loop for both stages: single process or torchrun DDP, atomic checkpoints, exact resume, logs.

A *task* (stage1.Stage1Task, stage2.Stage2Task) supplies the model and data; the loop owns everything else:

    task.build_model() -> nn.Module          # forward(batch) -> {"total": loss, other scalars...}
    task.param_groups(model) -> list[dict]   # AdamW groups, each with "params" and "lr"
    task.datasets() -> (train, val)          # map-style datasets, item i deterministic in i
    task.validate_batch(model, batch) -> {name: (sum, count)}   # summed metrics of one validation batch
    task.collate (optional)                   # collate_fn for the DataLoader
    task.validate_extra(model) (optional)     # extra metrics at validation time, main process only

Data order is a function of the step only: the global batch of step s is a contiguous slice of a per-epoch
permutation seeded by (seed, epoch); rank r takes its slice of that global batch. So a resumed run sees exactly
the samples an uninterrupted one would, and a DDP run with global batch B sees the same samples as a single
process with batch B (this replaces DistributedSampler, which cannot start mid-epoch).
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler

from ..config import merge_conf, write_conf

default_conf: dict[str, Any] = {
    "output_dir": None,       # required: checkpoints, logs and the resolved config go here
    "seed": 0,
    "steps": 1000,
    "batch_size": 8,          # GLOBAL batch (split evenly over DDP ranks)
    "num_workers": 0,
    "weight_decay": 0.01,
    "adam_eps": 1e-8,
    "lr_milestones": [0.9],   # fractions of `steps` at which the learning rate is multiplied by lr_gamma
    "lr_gamma": 0.1,
    "grad_clip": 0.01,        # max grad norm (None or 0: off)
    "amp": True,              # fp16 autocast + GradScaler on CUDA; ignored on CPU (fp32 there)
    "scaler_growth_interval": 1_000_000,
    "checkpoint_every": 100,
    "keep_checkpoints": 3,
    "log_every": 10,
    "val_every": 100,         # also validates at step 0 and at the last step; 0 disables
    "val_size": 32,           # number of held-back validation samples
    "val_batch_size": 4,      # per rank
    "device": "auto",         # auto | cpu | cuda
    "threads": 0,             # torch.set_num_threads per process (0: leave)
    "sync_bn": False,         # convert BatchNorm to SyncBatchNorm under DDP (CUDA)
    "find_unused_parameters": False,
    "tensorboard": True,
    "stop_at_step": None,     # leave the loop (after checkpointing) at this step: staged / interrupted runs
    "max_minutes": None,      # leave the loop (after checkpointing) after this wall time; resume continues
}

CKPT_RE = re.compile(r"^checkpoint_(\d{8})\.pt$")


# ----------------------------------------------------------------------------------------------- distribution
def dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment variables (0, 1, 0 when absent)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def setup_distributed(device_pref: str) -> tuple[torch.device, int, int]:
    """Pick the device and init the process group (nccl on CUDA, gloo on CPU) when WORLD_SIZE > 1."""
    rank, world, local = dist_info()
    use_cuda = torch.cuda.is_available() if device_pref == "auto" else device_pref == "cuda"
    if device_pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train: device=cuda requested but CUDA is not available; use device=cpu")
    device = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return device, rank, world


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


# ------------------------------------------------------------------------------------------------------ data
class StepBatchSampler(Sampler[list[int]]):
    """Yields this rank's index list for steps start_step, start_step+1, ... (deterministic in the step)."""

    def __init__(self, n: int, global_batch: int, rank: int, world: int, seed: int, start_step: int,
                 num_steps: int, shuffle: bool = True):
        if global_batch % world:
            raise ValueError(f"batch_size {global_batch} is not divisible by the {world} DDP processes")
        if n < global_batch:
            raise ValueError(f"dataset has {n} samples, fewer than one global batch ({global_batch})")
        self.n, self.B, self.rank, self.world = n, global_batch, rank, world
        self.seed, self.start, self.num_steps, self.shuffle = seed, start_step, num_steps, shuffle
        self.per_epoch = n // global_batch
        self._perm_epoch, self._perm = -1, None

    def global_indices(self, step: int) -> list[int]:
        """Indices of the whole global batch of `step`."""
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
            self._perm_epoch = epoch
        return self._perm[k * self.B:(k + 1) * self.B].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        b = self.B // self.world
        for step in range(self.start, self.start + self.num_steps):
            yield self.global_indices(step)[self.rank * b:(self.rank + 1) * b]

    def __len__(self) -> int:
        return self.num_steps


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a nested dict/list batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


# ----------------------------------------------------------------------------------------------- checkpoints
def checkpoint_path(output_dir: Path, step: int) -> Path:
    """Where the checkpoint of `step` is (or would be) written in `output_dir`."""
    return Path(output_dir) / f"checkpoint_{step:08d}.pt"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """The checkpoints kept in `output_dir`, oldest step first (empty if the folder does not exist)."""
    d = Path(output_dir)
    return sorted(p for p in d.glob("checkpoint_*.pt") if CKPT_RE.match(p.name)) if d.is_dir() else []


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The checkpoint with the highest step in `output_dir` (None if there is none)."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"python": repr(random.getstate()), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(s: dict) -> None:
    import ast
    st = ast.literal_eval(s["python"])
    random.setstate((st[0], tuple(st[1]), st[2]))
    np.random.set_state(("MT19937", s["numpy_keys"].numpy().astype(np.uint32), s["numpy_pos"], 0, 0.0))
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_checkpoint(path: Path, state: dict) -> Path:
    """torch.save to a temporary name, then rename: a crash never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------------------ loop
def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def validate(task, model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """Run task.validate_batch over the (rank-sharded) validation set; metrics are global sums / counts."""
    m = unwrap(model)
    was_training = m.training
    m.eval()
    sums: dict[str, list[float]] = {}
    with torch.no_grad():
        for batch in loader:
            for k, (s, c) in task.validate_batch(m, to_device(batch, device)).items():
                acc = sums.setdefault(k, [0.0, 0.0])
                acc[0] += float(s)
                acc[1] += float(c)
    m.train(was_training)
    keys = sorted(sums)
    if dist.is_initialized():  # every rank must hold the same key set: all ranks see the same task
        t = torch.tensor([v for k in keys for v in sums[k]], dtype=torch.float64)
        vals = _all_reduce_sum(t).tolist()
        sums = {k: vals[2 * i:2 * i + 2] for i, k in enumerate(keys)}
    return {k: s / max(c, 1e-12) for k, (s, c) in sums.items()}


def train(task, conf: Mapping[str, Any], resume: bool = False, on_finish=None) -> Path:
    """Train `task` for conf.steps steps; returns the output directory. `resume`: continue from its last checkpoint.

    `on_finish(model)` is called with the unwrapped model once conf.steps is reached (not on an early stop).
    """
    conf = merge_conf(default_conf, conf, "train")
    if not conf["output_dir"]:
        raise ValueError("train: conf.output_dir is required (where checkpoints and logs go)")
    out = Path(conf["output_dir"])
    device, rank, world = setup_distributed(conf["device"])
    if conf["threads"]:
        torch.set_num_threads(int(conf["threads"]))
    is_main = rank == 0
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_conf({"train": conf, "task": getattr(task, "conf", {})}, out / "config.json")

    random.seed(conf["seed"] + rank)
    np.random.seed(conf["seed"] + rank)
    torch.manual_seed(conf["seed"])  # identical initial weights on every rank
    model = task.build_model().to(device)
    groups = task.param_groups(model)
    torch.manual_seed(conf["seed"] + rank)
    opt = torch.optim.AdamW(groups, weight_decay=conf["weight_decay"], eps=conf["adam_eps"])
    milestones = sorted({max(1, int(round(f * conf["steps"]))) for f in conf["lr_milestones"]})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=conf["lr_gamma"])
    use_amp = bool(conf["amp"]) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp, growth_interval=conf["scaler_growth_interval"])

    step = 0
    ckpt = latest_checkpoint(out) if resume else None
    if ckpt is not None:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        # the schedule follows this run's `steps` (a resume may extend or shorten the run)
        sched.milestones = Counter(milestones)
        scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
        rngs = state["rng"]
        _set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])
        if is_main:
            print(f"[train] resumed from {ckpt} at step {step}", flush=True)
            _truncate_log(out / "metrics.jsonl", step)

    if world > 1:
        if conf["sync_bn"]:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=conf["find_unused_parameters"])

    train_ds, val_ds = task.datasets()
    collate = getattr(task, "collate", None)
    remaining = max(conf["steps"] - step, 0)
    sampler = StepBatchSampler(len(train_ds), conf["batch_size"], rank, world, conf["seed"], step, remaining)
    # own generator: creating the iterator must not draw from the global RNG (exact resume)
    loader = DataLoader(train_ds, batch_sampler=sampler, num_workers=conf["num_workers"], collate_fn=collate,
                        persistent_workers=False, generator=torch.Generator().manual_seed(conf["seed"] + step))
    val_loader = None
    if val_ds is not None and conf["val_every"]:
        n_val = min(conf["val_size"], len(val_ds))
        val_idx = list(range(rank, n_val, world))
        val_loader = DataLoader(torch.utils.data.Subset(val_ds, val_idx), batch_size=conf["val_batch_size"],
                                shuffle=False, num_workers=0, collate_fn=collate,
                                generator=torch.Generator().manual_seed(conf["seed"]))

    writer = None
    if is_main and conf["tensorboard"]:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out / "tensorboard"), purge_step=step if step else None)

    def log(split: str, s: int, values: dict[str, float]) -> None:
        if not is_main:
            return
        rec = {"step": s, "split": split, "time": time.time(), **values}
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if writer is not None:
            for k, v in values.items():
                writer.add_scalar(f"{split}/{k}", v, s)
            writer.flush()

    def run_val(s: int) -> None:
        if val_loader is None:
            return
        saved = _rng_state()  # validation must not perturb the training RNG streams (exact resume)
        metrics = validate(task, model, val_loader, device)
        if is_main and hasattr(task, "validate_extra"):  # e.g. real-pair pose AUC, main process only
            m = unwrap(model)
            m.eval()
            metrics.update(task.validate_extra(m))
            m.train()
        _set_rng_state(saved)
        log("val", s, metrics)
        if is_main:
            print(f"[val] step {s}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()), flush=True)

    if step == 0 and remaining > 0:
        run_val(0)
    model.train()
    t_start = time.time()
    acc: dict[str, float] = {}
    n_acc, t0 = 0, time.time()
    amp_ctx = (lambda: torch.autocast("cuda", dtype=torch.float16)) if use_amp else nullcontext
    for batch in loader:
        batch = to_device(batch, device)
        with amp_ctx():
            losses = model(batch)
        loss = losses["total"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train: non-finite loss {loss.item()} at step {step}; "
                                     f"lower the learning rate or check the data (see {out / 'metrics.jsonl'})")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if conf["grad_clip"]:
            scaler.unscale_(opt)
            gnorm = torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], conf["grad_clip"])
            acc["grad_norm"] = acc.get("grad_norm", 0.0) + float(gnorm)
        scaler.step(opt)
        scaler.update()
        sched.step()
        step += 1
        for k, v in losses.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        n_acc += 1
        if step % conf["log_every"] == 0 or step == conf["steps"]:
            keys = sorted(acc)
            t = _all_reduce_sum(torch.tensor([acc[k] for k in keys], dtype=torch.float64)) / (n_acc * world)
            vals = dict(zip(keys, t.tolist()))
            vals["lr"] = opt.param_groups[-1]["lr"]
            vals["sec_per_step"] = (time.time() - t0) / n_acc
            log("train", step, vals)
            if is_main:
                print(f"[train] step {step}/{conf['steps']} loss {vals['total']:.5g} "
                      f"({vals['sec_per_step']:.2f} s/step)", flush=True)
            acc, n_acc, t0 = {}, 0, time.time()
        if step % conf["checkpoint_every"] == 0 or step == conf["steps"]:
            _checkpoint(out, model, opt, sched, scaler, step, conf, is_main, conf["keep_checkpoints"])
        validated = conf["val_every"] and (step % conf["val_every"] == 0 or step == conf["steps"])
        if validated:
            run_val(step)
        if _should_stop(conf, step, t_start):
            if step % conf["checkpoint_every"] and step != conf["steps"]:
                _checkpoint(out, model, opt, sched, scaler, step, conf, is_main, conf["keep_checkpoints"])
            if conf["val_every"] and not validated:
                run_val(step)  # a staged / time-boxed run ends with a validation (after the checkpoint)
            if is_main:
                print(f"[train] stopping at step {step} (stop_at_step / max_minutes); resume to continue", flush=True)
            break
    if writer is not None:
        writer.close()
    if on_finish is not None and step >= conf["steps"]:
        on_finish(unwrap(model))
    if dist.is_initialized():
        dist.barrier()
    return out


def _checkpoint(out: Path, model, opt, sched, scaler, step: int, conf: dict, is_main: bool, keep: int) -> None:
    rng = _rng_state()
    if dist.is_initialized():
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, rng)
        rngs = gathered
    else:
        rngs = [rng]
    if not is_main:
        return
    state = {"model": unwrap(model).state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "scaler": scaler.state_dict(), "step": step, "config": json.loads(json.dumps(conf, default=str)),
             "rng": rngs}
    save_checkpoint(checkpoint_path(out, step), state)
    if keep:
        for p in list_checkpoints(out)[:-keep]:
            p.unlink(missing_ok=True)


def _should_stop(conf: dict, step: int, t_start: float) -> bool:
    stop = conf["stop_at_step"] is not None and step >= conf["stop_at_step"]
    if conf["max_minutes"] is not None:
        elapsed = torch.tensor([time.time() - t_start > 60 * conf["max_minutes"]], dtype=torch.float64)
        stop |= bool(_all_reduce_sum(elapsed) > 0)  # every rank stops at the same step
    return stop


def _truncate_log(path: Path, step: int) -> None:
    """Drop log records written after `step` by an interrupted run (so curves have no duplicate steps)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)
