"""Choose which image pairs to match and write them as an hloc pair file ("name0 name1" per line).

Methods (conf["method"], or the CLI string forms in brackets):
  exhaustive  [exhaustive]      every unordered pair, n(n-1)/2.
  sequential  [sequential:N]    videos: each image with the next N images of the same folder (names sorted);
                                `quadratic_overlap` adds offsets 2^k (k < N), `loop_closure_k` adds the top-k
                                retrieval neighbours of each image (see l2m_sfm.retrieval).
  retrieval   [retrieval:K]     each image with its K most similar images by a global descriptor
                                (l2m_sfm.retrieval: VLAD on XFeat local features, offline weights).
  file        [file:PATH]       an existing hloc pair file, checked against the image list.

Names with whitespace (camera exports: "IMG 0001.jpg") cannot stand in a whitespace-separated pair file, so
pair files hold them percent-encoded: whitespace and '%' become %XX ("IMG%200001.jpg"); every other name is
written as it is. `parse_pairs` decodes, so callers only ever see the real names.

    python -m l2m_sfm.pairs --images DIR --pairs sequential:3 --output pairs.txt
"""
from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from l2m.config import ConfigError, merge_conf

default_conf: dict[str, Any] = {
    "method": "exhaustive",
    "window": 5,                # sequential: neighbours after each image
    "quadratic_overlap": False,  # sequential: also i + 2^k for k < window
    "loop_closure_k": 0,         # sequential: add top-k retrieval pairs per image (0 = off)
    "num_matched": 10,           # retrieval: K neighbours per image
    "path": None,                # file: the pair file to use
    "retrieval": {},             # options for l2m_sfm.retrieval (free-form)
}

METHODS = ("exhaustive", "sequential", "retrieval", "file")


class PairFileError(ValueError):
    """A malformed pair file or one naming images that are not in the image set."""


def encode_name(name: str) -> str:
    """An image name as one pair-file token: whitespace and '%' percent-encoded (UTF-8), the rest unchanged."""
    return "".join("".join(f"%{b:02X}" for b in c.encode()) if c == "%" or c.isspace() else c for c in name)


def decode_name(token: str) -> str:
    """Inverse of `encode_name`."""
    return re.sub(r"(%[0-9A-Fa-f]{2})+", lambda m: bytes.fromhex(m.group(0).replace("%", "")).decode(
        "utf-8", errors="replace"), token)


def conf_from_string(text: str) -> dict[str, Any]:
    """CLI form -> conf: 'exhaustive', 'sequential:N', 'retrieval:K', 'file:PATH'."""
    method, _, arg = text.partition(":")
    method = method.strip()
    if method not in METHODS:
        raise ConfigError(f"Unknown pairing {text!r}; use exhaustive, sequential:N, retrieval:K or file:PATH")
    if method == "exhaustive":
        if arg:
            raise ConfigError(f"'exhaustive' takes no argument (got {text!r})")
        return {"method": "exhaustive"}
    if method == "file":
        if not arg:
            raise ConfigError("file:PATH needs a path, e.g. file:pairs.txt")
        return {"method": "file", "path": arg}
    if not arg:
        return {"method": method}
    try:
        n = int(arg)
    except ValueError as e:
        raise ConfigError(f"{method}:N needs an integer N (got {arg!r})") from e
    if n < 1:
        raise ConfigError(f"{method}:N needs N >= 1 (got {n})")
    return {"method": method, "window" if method == "sequential" else "num_matched": n}


def _unordered_unique(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: set[frozenset] = set()
    out = []
    for a, b in pairs:
        key = frozenset((a, b))
        if a == b or key in seen:
            continue
        seen.add(key)
        out.append((a, b))
    return out


def pairs_exhaustive(names: list[str]) -> list[tuple[str, str]]:
    """All n(n-1)/2 unordered pairs in name order."""
    names = sorted(names)
    return list(itertools.combinations(names, 2))


def pairs_sequential(names: list[str], window: int, quadratic_overlap: bool = False) -> list[tuple[str, str]]:
    """Each image with its `window` successors inside the same folder (frames of one video), optionally 2^k."""
    offsets = set(range(1, window + 1))
    if quadratic_overlap:
        offsets |= {2 ** k for k in range(window)}
    by_folder: dict[str, list[str]] = defaultdict(list)
    for n in sorted(names):
        by_folder[n.rsplit("/", 1)[0] if "/" in n else ""].append(n)
    pairs = []
    for seq in by_folder.values():
        for i, n in enumerate(seq):
            pairs += [(n, seq[i + o]) for o in sorted(offsets) if i + o < len(seq)]
    return pairs


def parse_pairs(path: Path, image_names: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """Read an hloc pair file: unordered duplicates and self-pairs dropped, blank lines tolerated at the end.

    Raises PairFileError naming the line of a malformed entry, or listing names absent from `image_names`.
    """
    path = Path(path)
    if not path.is_file():
        raise PairFileError(f"Pair file {path} does not exist")
    lines = path.read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    pairs = []
    for i, line in enumerate(lines, 1):
        tokens = line.split()
        if len(tokens) != 2:
            raise PairFileError(f"{path}, line {i}: expected 2 image names separated by a space, got "
                                f"{len(tokens)} token(s): {line!r}")
        pairs.append((decode_name(tokens[0]), decode_name(tokens[1])))
    if image_names is not None:
        known = set(image_names)
        missing = sorted({n for p in pairs for n in p} - known)
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise PairFileError(f"{path} names {len(missing)} image(s) that are not in the image folder: {shown}. "
                                "Names must be paths relative to --images.")
    return _unordered_unique(pairs)


def write_pairs(pairs: Iterable[tuple[str, str]], output: Path) -> Path:
    """Write "n0 n1" lines joined by newlines (no blank line, no trailing newline), atomically."""
    output = Path(output)
    lines = [f"{encode_name(a)} {encode_name(b)}" for a, b in pairs]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(output)
    return output


def retrieval_cache(output: Path) -> Path:
    """The descriptor cache of the retrieval pairs written to `output`: <stem>-global-descriptors.h5 beside it."""
    return Path(output).with_name(Path(output).stem + "-global-descriptors.h5")


def describe_sharded(conf: dict[str, Any], image_names: list[str], output: Path, image_dir: Path,
                     shards: Any) -> int:
    """Under torchrun: every rank describes its block of the images missing from the retrieval cache of
    `output` (if `conf` pairs by retrieval), rank 0 merges; `main` then finds them all cached. Returns how many."""
    conf = merge_conf(default_conf, conf, "pairs")
    if not (conf["method"] == "retrieval" or (conf["method"] == "sequential" and conf["loop_closure_k"])):
        return 0
    from l2m_sfm import h5io, retrieval

    cache = retrieval_cache(output)
    shards.merge(cache)
    todo = h5io.missing_names(cache, sorted(image_names))
    retrieval.describe(merge_conf(retrieval.default_conf, conf["retrieval"], "retrieval"), Path(image_dir),
                       shards.split(todo), shards.shard_path(cache), progress=shards.is_main)
    shards.merge(cache)
    return len(todo)


def _retrieval_pairs(names: list[str], k: int, image_dir: Path | None, output: Path,
                     retrieval_conf: dict) -> list[tuple[str, str]]:
    if image_dir is None:
        raise ConfigError("retrieval pairing needs image_dir (the images to describe)")
    from l2m_sfm import retrieval

    cache = retrieval_cache(output)
    desc = retrieval.global_descriptors(retrieval_conf, Path(image_dir), names, cache)
    return retrieval.pairs_from_descriptors(names, desc, k)


def main(conf: dict[str, Any], image_names: list[str], output: Path, image_dir: Path | None = None) -> Path:
    """Generate the pairs of `image_names` (relative names) with `conf` and write the hloc pair file `output`."""
    conf = merge_conf(default_conf, conf, "pairs")
    output = Path(output)
    names = sorted(image_names)
    method = conf["method"]
    if method == "exhaustive":
        pairs = pairs_exhaustive(names)
    elif method == "sequential":
        pairs = pairs_sequential(names, int(conf["window"]), bool(conf["quadratic_overlap"]))
        if conf["loop_closure_k"]:
            pairs += _retrieval_pairs(names, int(conf["loop_closure_k"]), image_dir, output, conf["retrieval"])
    elif method == "retrieval":
        pairs = _retrieval_pairs(names, int(conf["num_matched"]), image_dir, output, conf["retrieval"])
    elif method == "file":
        if not conf["path"]:
            raise ConfigError("pairs.method=file needs pairs.path")
        pairs = parse_pairs(Path(conf["path"]), names)
    else:
        raise ConfigError(f"Unknown pairs.method {method!r}; use one of {', '.join(METHODS)}")
    return write_pairs(_unordered_unique(pairs), output)


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write an hloc pair file for the images of a folder.")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--pairs", default="exhaustive", help="exhaustive | sequential:N | retrieval:K | file:PATH")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    from l2m.images import list_images
    from l2m_sfm.images import format_listing

    names, skipped = list_images(args.images)
    if skipped:
        print(format_listing(args.images, [], skipped), file=sys.stderr)
    out = main(conf_from_string(args.pairs), names, args.output, image_dir=args.images)
    print(f"{len(parse_pairs(out))} pairs of {len(names)} images written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
