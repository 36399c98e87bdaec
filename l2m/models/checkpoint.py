"""Safe, offline checkpoint loading: unwrap, strip prefixes, strict load with a readable key report.

Accepted file layouts (all read with ``torch.load(..., weights_only=True)``):

* a flat state dict ``{key: tensor}``;
* ``{"model": state_dict, ...}`` (FiT3D / L2M ICCV encoder, trainer dumps) or ``{"state_dict": ...}``
  (Lightning-style, e.g. the L2M++ "v2" file);
* keys with ONE leading ``module.`` (DDP) and/or ``model.`` prefix; they are removed as prefixes only, never
  as substrings (the upstream ``replace("model.", "")`` bug is not reproduced).

Names that are not paths are resolved in the cache directory ``$L2M_HOME`` (default ``~/.cache/l2m``), folder
``checkpoints/``. Nothing is ever downloaded: a missing file raises :class:`MissingCheckpointError` naming the
file and the folder to put it in.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

CACHE_ENV = "L2M_HOME"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "weights"


class MissingCheckpointError(FileNotFoundError):
    """A checkpoint file that is not on disk (we never download)."""


class CheckpointMismatchError(RuntimeError):
    """A state dict whose keys or shapes do not fit the module; the message lists every difference."""


def cache_dir() -> Path:
    """Folder where checkpoint names are looked up: ``$L2M_HOME/checkpoints`` (default ``~/.cache/l2m``)."""
    root = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "l2m")
    return Path(root).expanduser() / "checkpoints"


def resolve_checkpoint(name_or_path: str | os.PathLike, search: Iterable[Path] = (),
                       what: str = "checkpoint") -> Path:
    """Return an existing file for a path or a bare file name (searched in `search`, then the cache dir)."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    candidates = [Path(d) / p.name for d in search] + [cache_dir() / p.name]
    if not p.is_absolute() and len(p.parts) == 1:
        for c in candidates:
            if c.is_file():
                return c
    where = ", ".join(str(c.parent) for c in candidates)
    raise MissingCheckpointError(
        f"The {what} file {str(p)!r} was not found. Nothing is downloaded at run time: put the file "
        f"{p.name!r} into {cache_dir()} (or set ${CACHE_ENV} to a folder whose 'checkpoints/' holds it), "
        f"or pass its full path. Looked in: {where}.")


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "model."):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key


def unwrap_state_dict(obj: Mapping) -> dict[str, torch.Tensor]:
    """Take ``obj['state_dict']`` / ``obj['model']`` if present, strip one leading module./model. per key."""
    if not isinstance(obj, Mapping):
        raise CheckpointMismatchError(f"Expected a dict of tensors, got {type(obj).__name__}")
    for wrapper in ("state_dict", "model"):
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping):
            obj = inner
            break
    out = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue
        nk = _strip_prefix(k)
        if nk in out:
            raise CheckpointMismatchError(f"Key {k!r} collides with another key after prefix stripping ({nk!r})")
        out[nk] = v
    return out


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a checkpoint file on CPU with weights_only=True and unwrap it."""
    try:
        # FiT3D / L2M-ICCV files store their argparse Namespace under "args": allow that plain container only
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — re-raised with the file name
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointMismatchError(
            f"Could not read checkpoint {Path(path).name!r} in {Path(path).resolve().parent} with "
            f"torch.load(weights_only=True): {reason}. A truncated or partly copied file must be copied again; "
            "a file that pickles other Python objects must be re-saved as a plain state dict "
            "(torch.save(ckpt['model'], 'clean.pth')) in a trusted environment.") from e
    return unwrap_state_dict(obj)


def key_report(module: nn.Module, state: Mapping[str, torch.Tensor],
               ignore_missing: Iterable[str] = ()) -> tuple[list[str], list[str], list[str]]:
    """Compare a state dict with a module: (missing keys, unexpected keys, 'key: file shape vs model shape')."""
    own = module.state_dict()
    ignore = set(ignore_missing)
    missing = sorted(k for k in own if k not in state and k not in ignore)
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    return missing, unexpected, shapes


def format_report(missing: list[str], unexpected: list[str], shapes: list[str], limit: int = 20) -> str:
    """Human-readable key report, at most `limit` lines per section."""
    lines = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if items:
            lines.append(f"  {len(items)} {title} key(s):")
            lines += [f"    {x}" for x in items[:limit]]
            if len(items) > limit:
                lines.append(f"    ... and {len(items) - limit} more")
    return "\n".join(lines)


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True,
              source: str = "state dict", ignore_missing: Iterable[str] = (),
              drop: Iterable[str] = ()) -> tuple[list[str], list[str], list[str]]:
    """Load `state` into `module`; strict mode raises CheckpointMismatchError listing every difference.

    `drop` keys are removed from `state` first (e.g. DINOv2's ``mask_token``); `ignore_missing` keys may be absent.
    Non-strict mode loads the matching keys and returns the report instead of raising.
    """
    state = {k: v for k, v in state.items() if k not in set(drop)}
    missing, unexpected, shapes = key_report(module, state, ignore_missing)
    if strict and (missing or unexpected or shapes):
        raise CheckpointMismatchError(
            f"{source} does not fit {type(module).__name__} ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(shapes)} mis-shaped keys):\n{format_report(missing, unexpected, shapes)}\n"
            "Check that the file belongs to this model variant (see l2m.models.zoo.VARIANTS).")
    own = module.state_dict()
    good = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    module.load_state_dict(good, strict=False)
    return missing, unexpected, shapes


def save_state_dict(module: nn.Module, path: str | os.PathLike) -> Path:
    """Save a flat state dict atomically (temp name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, tmp)
    tmp.replace(path)
    return path
