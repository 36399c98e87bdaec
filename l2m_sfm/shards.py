"""Run a stage on N processes (torchrun): which rank does which images/pairs, its shard file, the merge.

    torchrun --nproc_per_node N -m l2m_sfm.reconstruct --images DIR --output OUT       # one machine
    torchrun --nnodes M --node_rank K --rdzv_endpoint HOST:PORT --nproc_per_node N -m l2m_sfm.reconstruct ...
                                                   # several machines, OUT on a shared file system

How a sharded stage runs (`Shards`, one per process, from torchrun's RANK / WORLD_SIZE / LOCAL_RANK):
1. `merge(path)`: rank 0 folds every leftover shard file of `path` (from a run that was killed, with any N)
   into `path`; all ranks wait. So the work already done is known from `path` alone.
2. Every rank lists the missing items from `path` (the same list on every rank) and takes its contiguous
   block of it (`split`): block boundaries follow the sorted list, so each image's pairs stay together.
3. Each rank writes its items to its own file `<stem>.shard-<rank>-of-<world>.h5` beside `path`
   (`shard_path`), each item completely or not at all (l2m_sfm.h5io markers).
4. `merge(path)` again: rank 0 copies `path` to `path.tmp`, adds every complete group of every shard, renames
   the copy onto `path` and only then deletes the shards. A crash at any point leaves `path` whole and the
   shards in place, and the next run merges them (step 1): nothing finished is recomputed. A shard that
   HDF5 cannot open at all (killed during its first write) is set aside as `<shard>.unreadable` and its items
   are recomputed.
Rank 0 alone runs what follows matching (quantisation of dense matches, database, verification, mapping).

Devices: `--device cuda` gives rank r the GPU `cuda:LOCAL_RANK`; on the CPU each process of a machine gets
cpu_count / LOCAL_WORLD_SIZE torch threads. The process group (gloo on CPU, nccl on CUDA) comes from
`l2m.train.loop.setup_distributed`, the training code's own. Without torchrun (WORLD_SIZE unset) every
method is a no-op: `shard_path(p)` is `p`, `split(x)` is `x`, so the single-process code path is unchanged.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

import h5py

T = TypeVar("T")
SHARD_RE = re.compile(r"^(?P<stem>.+)\.shard-(?P<rank>\d+)-of-(?P<world>\d+)\.h5$")


@dataclass(frozen=True)
class Shards:
    """This process's place in a torchrun job: rank, world size, local rank and local world size."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the one that merges, verifies and maps)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        """Wait for every rank (no-op without a process group)."""
        import torch.distributed as dist

        if self.distributed and dist.is_available() and dist.is_initialized():
            dist.barrier()

    def split(self, items: Sequence[T]) -> list[T]:
        """This rank's contiguous block of `items` (sizes differ by at most one; rank order = list order)."""
        return list(items[block_start(len(items), self.rank, self.world):
                          block_start(len(items), self.rank + 1, self.world)])

    def shard_path(self, path: Path) -> Path:
        """The file this rank writes instead of `path` (`path` itself when single-process)."""
        path = Path(path)
        if not self.distributed:
            return path
        return path.with_name(f"{path.stem}.shard-{self.rank}-of-{self.world}{path.suffix}")

    def merge(self, path: Path) -> int:
        """All ranks wait, rank 0 merges every shard of `path` into it, all wait again; returns groups added."""
        self.barrier()
        added = merge_shards(Path(path)) if self.is_main else 0
        self.barrier()
        return added

    def device(self, device: str) -> str:
        """This rank's torch device for the user's `device`: 'cuda' -> 'cuda:LOCAL_RANK' under torchrun."""
        if self.distributed and device.startswith("cuda"):
            return f"cuda:{self.local_rank}"
        return device


def block_start(n: int, rank: int, world: int) -> int:
    """First index of block `rank` when n items are cut into `world` contiguous blocks of near-equal size."""
    return rank * (n // world) + min(rank, n % world)


def from_env() -> Shards:
    """The Shards of this process from torchrun's environment (rank 0 of 1 without torchrun)."""
    from l2m.train.loop import dist_info

    rank, world, local = dist_info()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return Shards(rank, world, local, local_world)


def setup(device: str) -> Shards:
    """Join the torchrun process group (if any), pin this rank's GPU or split the CPU threads; returns Shards.

    `device` is the user's choice (cpu, cuda, cuda:N). Single-process: nothing is changed.
    """
    shards = from_env()
    if not shards.distributed:
        return shards
    import torch

    from l2m.train.loop import setup_distributed

    setup_distributed("cuda" if device.startswith("cuda") else "cpu")
    if not device.startswith("cuda"):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // shards.local_world))
    return shards


def shard_files(path: Path) -> list[Path]:
    """Every shard file of `path` in its folder (any rank, any world size), sorted by (world, rank)."""
    path = Path(path)
    found = []
    for p in path.parent.glob(f"{path.stem}.shard-*-of-*{path.suffix}"):
        m = SHARD_RE.match(p.name)
        if m and m["stem"] == path.stem:
            found.append((int(m["world"]), int(m["rank"]), p))
    return [p for _, _, p in sorted(found)]


def _complete_groups(f: h5py.File) -> list[str]:
    """Keys of the leaf groups written completely (h5io marker True, or no marker and at least one dataset)."""
    from l2m_sfm.h5io import COMPLETE

    keys: list[str] = []

    def visit(name: str, obj) -> None:
        if not isinstance(obj, h5py.Group) or not any(isinstance(v, h5py.Dataset) for v in obj.values()):
            return
        if bool(obj.attrs.get(COMPLETE, True)):
            keys.append(name)

    f.visititems(visit)
    return keys


def merge_shards(path: Path) -> int:
    """Fold every shard of `path` into `path` atomically (copy, add, rename), then delete the shards.

    A group already complete in `path` is kept; file attributes of a shard (e.g. `matcher`) are copied when
    `path` lacks them. Returns the number of groups added.
    """
    path = Path(path)
    shards = shard_files(path)
    if not shards:
        return 0
    readable = []
    for shard in shards:
        try:
            with h5py.File(shard, "r"):
                readable.append(shard)
        except OSError:  # killed before HDF5 wrote its superblock: nothing in it can be trusted
            shard.replace(shard.with_name(shard.name + ".unreadable"))
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    if path.exists():
        shutil.copyfile(path, tmp)
    added = 0
    with h5py.File(tmp, "a", libver="earliest") as out:
        present = set(_complete_groups(out))
        for shard in readable:
            with h5py.File(shard, "r") as f:
                for key, value in f.attrs.items():
                    if key not in out.attrs:
                        out.attrs[key] = value
                for key in _complete_groups(f):
                    if key in present:
                        continue
                    if key in out:  # an incomplete leftover of an earlier writer
                        del out[key]
                    parent = key.rsplit("/", 1)[0] if "/" in key else None
                    if parent is not None:
                        out.require_group(parent)
                    f.copy(f[key], out[parent] if parent else out, name=key.rsplit("/", 1)[-1])
                    present.add(key)
                    added += 1
        out.flush()
    os.replace(tmp, path)
    for shard in readable:
        shard.unlink()
    return added
