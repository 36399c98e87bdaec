"""Generate a folder of synthetic stage-2 training pairs from single photos (L2M data engine, spec §8-§10).

    python pipelines/generate_data.py --images DIR [--disparity DIR] --output OUT --views-per-image K \
        [--relight] [--sky-mask [MODEL.onnx]] [--size 512] [--seed 0] [data.key=value ...]

Disparity maps (<image name without suffix>.npy or 16-bit .png, any resolution, e.g. from Depth Anything V2)
are optional; without --disparity the built-in pseudo-depth is used (l2m/data/pseudo_depth.py: read its
limits). --depth-kind depth takes metric depth maps unchanged instead of disparity. Sample k of image i is
generated with np.random.default_rng([seed, i, k]), the same as l2m.data.synthetic.SyntheticPairs, so a folder
and the on-the-fly dataset give identical pairs. Reruns skip finished samples. Format: docs/synthetic_data.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from l2m.config import merge_conf, parse_overrides, write_conf
from l2m.data.engine import PairGenerator, default_conf
from l2m.data.synthetic import find_disparity, load_disparity, sample_name, write_sample
from l2m.images import ImageReadError, list_images, read_image


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(conf: dict | None, images: Path, output: Path, disparity: Path | None = None, views_per_image: int = 1,
         seed: int = 0, progress: bool = True) -> Path:
    """Generate OUT/<sample>/ folders, samples.txt, skipped.txt and conf.json; returns OUT."""
    conf = merge_conf(default_conf, conf, "data")
    images, output = Path(images), Path(output)
    if disparity is not None and not Path(disparity).is_dir():
        raise FileNotFoundError(f"Disparity folder {disparity} does not exist; pass --disparity DIR or omit it")
    names, skipped = list_images(images)
    if not names:
        detail = f"; {len(skipped)} files skipped, e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise FileNotFoundError(f"{images} holds no readable photos{detail}; pass --images DIR with jpg/png/tif "
                                "photos")
    generator = PairGenerator(conf)  # a missing sky model etc. fails here, before anything is written
    output.mkdir(parents=True, exist_ok=True)
    write_conf(dict(conf, images=str(images), disparity=str(disparity) if disparity else None,
                    views_per_image=views_per_image, seed=seed), output / "conf.json")
    done: list[str] = []
    bar = tqdm(total=len(names) * views_per_image, desc="pairs", unit="pair", disable=not progress)
    for i, name in enumerate(names):
        todo = [v for v in range(views_per_image) if not (output / sample_name(name, v) / "meta.json").is_file()]
        done += [sample_name(name, v) for v in range(views_per_image) if v not in todo]
        bar.update(views_per_image - len(todo))
        if not todo:
            continue
        try:
            image = read_image(images / name)
            disp = None
            if disparity is not None:
                dpath = find_disparity(disparity, name)
                if dpath is None:
                    raise ValueError(f"no disparity file {Path(name).with_suffix('')}.npy|.png in {disparity}")
                disp = load_disparity(dpath)
            if min(image.shape[:2]) < 16:
                raise ValueError(f"image too small ({image.shape[1]}x{image.shape[0]})")
        except (ImageReadError, ValueError, OSError) as e:
            skipped.append((name, getattr(e, "reason", str(e))))
            bar.update(len(todo))
            continue
        for v in todo:
            try:
                pair = generator(image, disp, np.random.default_rng([seed, i, v]))
                write_sample(output, sample_name(name, v), pair, {"source": name, "view": v, "seed": seed})
                done.append(sample_name(name, v))
            except (ValueError, RuntimeError) as e:  # a degenerate depth map, say: report, keep going
                skipped.append((f"{name}#v{v}", f"generation failed: {e}"))
            bar.update(1)
    bar.close()
    order = {n: k for k, n in enumerate(sample_name(nm, v) for nm in names for v in range(views_per_image))}
    _write_text(output / "samples.txt", "".join(n + "\n" for n in sorted(set(done), key=order.get)))
    _write_text(output / "skipped.txt", "".join(f"{n}\t{r}\n" for n, r in skipped))
    print(f"{len(set(done))} pairs in {output}; {len(skipped)} inputs skipped" +
          (f" (see {output / 'skipped.txt'}):" if skipped else ""))
    for n, r in skipped[:20]:
        print(f"  skipped {n}: {r}")
    if len(skipped) > 20:
        print(f"  ... and {len(skipped) - 20} more")
    return output


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, required=True, help="folder of photos (searched recursively)")
    p.add_argument("--disparity", type=Path, help="folder of <name>.npy / 16-bit .png disparity maps")
    p.add_argument("--depth-kind", choices=["disparity", "depth"], default="disparity",
                   help="what the --disparity maps hold (depth = metric depth, used unchanged)")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--views-per-image", type=int, default=1)
    p.add_argument("--relight", action="store_true", help="relight A and/or B (Lambertian, random point lights)")
    p.add_argument("--sky-mask", nargs="?", const="builtin", default=None, metavar="MODEL.onnx",
                   help="mask sky (no correspondences there): an ONNX sky model, or the built-in heuristic")
    p.add_argument("--size", type=int, default=512, help="side of the square crops (spec: 512)")
    p.add_argument("--pseudo-depth", choices=["popup", "planes", "smooth"], default="popup")
    p.add_argument("--inpainter", default="telea", help="telea | ns | none | a registered name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("overrides", nargs="*", help="data config overrides key=value, e.g. pose.min_covisible=0.5")
    return p.parse_args(argv)


def cli(argv: list[str] | None = None) -> Path:
    """Parse the command line and generate; raises ConfigError / FileNotFoundError on bad input."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    conf = {"size": args.size, "pseudo_depth": args.pseudo_depth, "inpainter": args.inpainter,
            "depth_input": args.depth_kind}
    if args.relight:
        conf["relight"] = {"enabled": True}
    if args.sky_mask:
        conf["sky"] = {"enabled": True, "model": None if args.sky_mask == "builtin" else args.sky_mask}
    user = parse_overrides(args.overrides)
    conf = merge_conf(merge_conf(default_conf, conf, "data"), user, "data")
    return main(conf, args.images, args.output, args.disparity, args.views_per_image, args.seed)


def run(argv: list[str] | None = None) -> int:
    """`cli` with one-line errors: status 2 for bad configuration or input, 1 when no pair could be generated."""
    try:
        out = cli(argv)
    except (FileNotFoundError, ValueError, ImportError, OSError) as e:  # ConfigError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not (out / "samples.txt").read_text().strip():
        print(f"error: no pair could be generated; the reasons are in {out / 'skipped.txt'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
