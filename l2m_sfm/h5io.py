"""Read and write hloc-format HDF5 features and matches, crash-safely.

Layout (hloc, see spec A4/A5): features.h5 has one group per image name ('/' in a name makes nested groups)
with `keypoints` (N,2) float32 in pixels, hloc convention (centre of the top-left pixel = (0,0)), optional
`scores` (sparse) or `score` (dense), `descriptors` stored (D,N) and `image_size` (W,H). matches.h5 has one
group per pair `names_to_pair(n0, n1)` with `matches0` (-1 = unmatched) and `matching_scores0`. Raw dense
correspondences use `keypoints0`, `keypoints1`, `scores` (float32).

Atomicity: every group this module writes gets the attribute `complete=False` when created and `True` after
its last dataset; a group whose marker is False, or that lacks its main dataset, counts as absent and is
deleted by `remove_incomplete` (and before any rewrite). Groups written by hloc (no marker) count as complete.
Each write opens and closes the file, so a `kill -9` between two writes leaves every earlier group intact.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

COMPLETE = "complete"


class H5LookupError(LookupError):
    """An image or pair that is missing from an HDF5 file; the message lists what and where."""


def names_to_pair(name0: str, name1: str, separator: str = "/") -> str:
    """hloc pair key: '/' inside each name becomes '-', names joined by `separator` (nested groups)."""
    return separator.join((name0.replace("/", "-"), name1.replace("/", "-")))


def names_to_pair_old(name0: str, name1: str) -> str:
    """Legacy hloc pair key joined by '_'."""
    return names_to_pair(name0, name1, separator="_")


@contextmanager
def _open(path_or_file: Path | str | h5py.File, mode: str = "r") -> Iterator[h5py.File]:
    if isinstance(path_or_file, (h5py.File, h5py.Group)):
        yield path_or_file
        return
    path = Path(path_or_file)
    if mode == "r" and not path.exists():
        raise FileNotFoundError(f"HDF5 file {path} does not exist; run the stage that writes it first")
    if mode != "r":
        path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, mode, libver="earliest") as f:
        yield f


def _is_complete(group: h5py.Group, main_dataset: str) -> bool:
    return isinstance(group, h5py.Group) and main_dataset in group and bool(group.attrs.get(COMPLETE, True))


def _complete_group(f: h5py.File, key: str, main_dataset: str) -> h5py.Group | None:
    group = f.get(key)
    return group if group is not None and _is_complete(group, main_dataset) else None


@contextmanager
def _write_group(path: Path | str | h5py.File, key: str) -> Iterator[h5py.Group]:
    """Create `key` afresh (deleting any old version), mark it incomplete, yield it, then mark it complete."""
    with _open(path, "a") as f:
        if key in f:
            del f[key]
        group = f.create_group(key)
        group.attrs[COMPLETE] = False
        yield group
        group.attrs[COMPLETE] = True
        f.flush()


# ------------------------------------------------------------------------------------------------- features
def write_keypoints(path: Path | str, name: str, keypoints: np.ndarray, scores: np.ndarray | None = None,
                    descriptors: np.ndarray | None = None, image_size: tuple[int, int] | None = None,
                    score_name: str = "scores", descriptors_half: bool = True) -> None:
    """Store one image's keypoints (N,2) px hloc convention, scores (N,), descriptors (N,D) -> stored (D,N)."""
    keypoints = np.asarray(keypoints, np.float32).reshape(-1, 2)
    with _write_group(path, name) as g:
        g.create_dataset("keypoints", data=keypoints)
        if scores is not None:
            g.create_dataset(score_name, data=np.asarray(scores, np.float32).reshape(-1))
        if descriptors is not None:
            desc = np.asarray(descriptors)
            if desc.dtype.kind == "f" and descriptors_half:
                desc = desc.astype(np.float16)
            g.create_dataset("descriptors", data=desc.reshape(len(keypoints), -1).T)
        if image_size is not None:
            g.create_dataset("image_size", data=np.asarray(image_size, np.int64).reshape(2))


def read_keypoints(path: Path | str | h5py.File, name: str) -> np.ndarray:
    """Keypoints (N,2) float32 of image `name`, pixels in hloc convention."""
    with _open(path) as f:
        g = _complete_group(f, name, "keypoints")
        if g is None:
            raise H5LookupError(f"Image {name!r} has no keypoints in {getattr(f, 'filename', path)}; "
                                "rerun feature extraction (or matching) for it")
        return np.asarray(g["keypoints"], np.float32)


def read_features(path: Path | str | h5py.File, name: str) -> dict[str, np.ndarray]:
    """All datasets of one image; `descriptors` are returned as (N,D)."""
    with _open(path) as f:
        g = _complete_group(f, name, "keypoints")
        if g is None:
            raise H5LookupError(f"Image {name!r} has no features in {getattr(f, 'filename', path)}")
        out = {k: np.asarray(v) for k, v in g.items() if isinstance(v, h5py.Dataset)}
    if "descriptors" in out:
        out["descriptors"] = out["descriptors"].T
    out["keypoints"] = out["keypoints"].astype(np.float32)
    return out


def list_names(path: Path | str | h5py.File, main_dataset: str = "keypoints") -> list[str]:
    """Names of the complete groups that hold `main_dataset` (image names of a features file), sorted."""
    names: list[str] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset) and name.rsplit("/", 1)[-1] == main_dataset:
            parent = obj.parent
            if _is_complete(parent, main_dataset):
                names.append(parent.name.lstrip("/"))

    with _open(path) as f:
        f.visititems(visit)
    return sorted(names)


def missing_names(path: Path | str, names: list[str]) -> list[str]:
    """The names among `names` that have no complete keypoints group in `path` (all of them if no file)."""
    if not Path(path).exists():
        return list(names)
    present = set(list_names(path))
    return [n for n in names if n not in present]


def require_names(path: Path | str, names: list[str], what: str = "features") -> None:
    """Raise H5LookupError listing every name in `names` that is absent from the features file."""
    missing = missing_names(path, names)
    if missing:
        shown = ", ".join(missing[:20]) + (f" ... ({len(missing)} in total)" if len(missing) > 20 else "")
        raise H5LookupError(f"{len(missing)} image(s) used by the pairs are missing from the {what} file "
                            f"{path}: {shown}. Check that --images, the pair file and {Path(path).name} "
                            "come from the same image set, or rerun the extraction.")


# -------------------------------------------------------------------------------------------------- matches
def find_pair(hfile: h5py.File, name0: str, name1: str, main_dataset: str = "matches0") -> tuple[str, bool]:
    """Key of pair (name0, name1) in an open match file and whether it is stored reversed (4 hloc variants)."""
    for key, rev in ((names_to_pair(name0, name1), False), (names_to_pair(name1, name0), True),
                     (names_to_pair_old(name0, name1), False), (names_to_pair_old(name1, name0), True)):
        if _complete_group(hfile, key, main_dataset) is not None:
            return key, rev
    raise H5LookupError(f"Pair ({name0}, {name1}) is not in {hfile.filename} (tried "
                        f"{names_to_pair(name0, name1)!r}, its reverse and the legacy '_' forms); "
                        "rerun matching for this pair file")


def has_pair(path: Path | str | h5py.File, name0: str, name1: str, main_dataset: str = "matches0") -> bool:
    """True if the pair is stored completely (either order, either naming)."""
    if not isinstance(path, (h5py.File, h5py.Group)) and not Path(path).exists():
        return False
    with _open(path) as f:
        try:
            find_pair(f, name0, name1, main_dataset)
            return True
        except H5LookupError:
            return False


def _index_dtype(values: np.ndarray) -> type:
    return np.int16 if values.size == 0 or int(values.max()) <= np.iinfo(np.int16).max else np.int32


def write_matches(path: Path | str, name0: str, name1: str, matches0: np.ndarray, scores0: np.ndarray,
                  dense: bool = False) -> None:
    """Store matches0 (N0,) index into image1's keypoints or -1, and matching_scores0 (N0,) float16.

    Sparse files use int16 like hloc when every index fits, int32 otherwise; `dense=True` always uses int32.
    """
    matches0 = np.asarray(matches0).reshape(-1).astype(np.int64)
    dtype = np.int32 if dense else _index_dtype(matches0)
    with _write_group(path, names_to_pair(name0, name1)) as g:
        g.create_dataset("matches0", data=matches0.astype(dtype))
        g.create_dataset("matching_scores0", data=np.asarray(scores0, np.float32).reshape(-1).astype(np.float16))


def matches_to_matches0(matches: np.ndarray, scores: np.ndarray, num0: int) -> tuple[np.ndarray, np.ndarray]:
    """(M,2) index pairs + (M,) scores -> hloc matches0 (num0,) with -1 and matching_scores0 (num0,)."""
    matches = np.asarray(matches, np.int64).reshape(-1, 2)
    m0 = np.full(num0, -1, np.int64)
    s0 = np.zeros(num0, np.float32)
    m0[matches[:, 0]] = matches[:, 1]
    s0[matches[:, 0]] = np.asarray(scores, np.float32).reshape(-1)
    return m0, s0


def read_matches(path: Path | str | h5py.File, name0: str, name1: str) -> tuple[np.ndarray, np.ndarray]:
    """(M,2) int64 indices [idx in name0, idx in name1] and (M,) float32 scores, whatever order was stored."""
    with _open(path) as f:
        key, reverse = find_pair(f, name0, name1)
        m0 = np.asarray(f[key]["matches0"]).astype(np.int64)
        s0 = np.asarray(f[key]["matching_scores0"], np.float32) if "matching_scores0" in f[key] \
            else np.ones(len(m0), np.float32)
    idx = np.flatnonzero(m0 != -1)
    matches = np.stack([idx, m0[idx]], -1)
    if reverse:
        matches = matches[:, ::-1].copy()
    return matches, s0[idx]


def write_raw_matches(path: Path | str, name0: str, name1: str, keypoints0: np.ndarray,
                      keypoints1: np.ndarray, scores: np.ndarray) -> None:
    """Store a dense matcher's raw correspondences (N,2)+(N,2) px hloc convention, scores (N,), float32."""
    with _write_group(path, names_to_pair(name0, name1)) as g:
        g.create_dataset("keypoints0", data=np.asarray(keypoints0, np.float32).reshape(-1, 2))
        g.create_dataset("keypoints1", data=np.asarray(keypoints1, np.float32).reshape(-1, 2))
        g.create_dataset("scores", data=np.asarray(scores, np.float32).reshape(-1))


def read_raw_matches(path: Path | str | h5py.File, name0: str, name1: str
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw correspondences (kpts in name0, kpts in name1, scores), swapped if the pair was stored reversed."""
    with _open(path) as f:
        key, reverse = find_pair(f, name0, name1, main_dataset="keypoints0")
        g = f[key]
        k0, k1 = np.asarray(g["keypoints0"], np.float32), np.asarray(g["keypoints1"], np.float32)
        s = np.asarray(g["scores"], np.float32)
    return (k1, k0, s) if reverse else (k0, k1, s)


def list_pairs(path: Path | str | h5py.File, main_dataset: str = "matches0") -> list[str]:
    """Keys ('a.jpg/b.jpg' form, or legacy) of every complete pair group holding `main_dataset`."""
    return list_names(path, main_dataset)


def remove_incomplete(path: Path | str) -> list[str]:
    """Delete groups left half-written by an interrupted writer; returns their keys."""
    path = Path(path)
    if not path.exists():
        return []
    bad: list[str] = []

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Group) and COMPLETE in obj.attrs and not bool(obj.attrs[COMPLETE]):
            bad.append(name)

    with _open(path, "a") as f:
        f.visititems(visit)
        for name in sorted(bad, key=len, reverse=True):
            if name in f:
                del f[name]
        f.flush()
    return bad
