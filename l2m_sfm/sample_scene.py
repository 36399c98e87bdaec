"""A small synthetic scene with exact ground truth, rendered by the project itself (the demo and test scene).

Textured planes (floor, two walls, two boxes) are ray-cast with numpy from a few known pinhole cameras.
Textures are procedural (seeded noise, shapes, text) plus the photos that ship with matplotlib
(`mpl-data/sample_data`), so nothing is downloaded. Outputs in `--output`:

    images/view_XX.jpg      RGB renders (W x H, JPEG)
    gt/cameras.txt, gt/images.txt, gt/points3D.txt   COLMAP text model (PINHOLE, world-to-camera poses)
    depth/view_XX.npz       `depth` uint16 (H, W) and `scale` (float): camera-z depth at pixel centres is
                            depth * scale (GT units), 0 where nothing is hit (load with `load_depth`)

World frame: z up, metres. Pixel convention of the GT cameras: COLMAP (top-left image corner at (0, 0)).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

default_conf = {
    "num_views": 8,
    "width": 640,
    "height": 480,
    "focal": 520.0,
    "supersample": 2,  # samples per pixel side (anti-aliasing)
    "jpeg_quality": 92,
    "seed": 7,
}


@dataclass
class Quad:
    """A textured rectangle origin + a*u + b*v, (a, b) in [0, 1]^2; texture row 0 is at b = 0."""

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    texture: np.ndarray  # (Ht, Wt, 3) float32 in [0, 1]
    shade: float = 1.0


def _sample_photo(name: str) -> np.ndarray | None:
    """An RGB float image from matplotlib's sample data, or None when absent."""
    import matplotlib

    path = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / name
    if not path.exists():
        return None
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    if image.ndim == 3 and image.shape[2] == 4:  # composite RGBA onto white
        alpha = image[..., 3:4].astype(np.float32) / 255
        image = (image[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255


def procedural_texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Richly textured RGB float image: multi-scale coloured noise, shapes, lines and text."""
    tex = np.zeros((height, width, 3), np.float32)
    for octave, weight in ((4, 0.5), (16, 0.3), (64, 0.2)):
        grid = rng.random((max(2, height * octave // width), octave, 3)).astype(np.float32)
        tex += weight * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    tex = np.clip(tex, 0, 1)
    canvas = (tex * 255).astype(np.uint8)
    area = width * height
    for _ in range(area // 3000):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        s = int(rng.integers(4, max(6, width // 20)))
        if kind == 0:
            cv2.circle(canvas, (x, y), s, color, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(canvas, (x, y), (x + s, y + int(rng.integers(4, 2 * s))), color, -1)
        elif kind == 2:
            cv2.line(canvas, (x, y), (x + int(rng.integers(-3 * s, 3 * s)), y + int(rng.integers(-3 * s, 3 * s))),
                     color, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            text = "".join(chr(c) for c in rng.integers(65, 91, int(rng.integers(2, 6))))
            cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, s / 15, color, 2, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255


def _paste(texture: np.ndarray, photo: np.ndarray | None, x: int, y: int, width: int) -> None:
    """Paste a photo resized to `width` at (x, y) into a texture, in place (clipped to the texture)."""
    if photo is None:
        return
    height = round(photo.shape[0] * width / photo.shape[1])
    patch = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
    h = min(height, texture.shape[0] - y)
    w = min(width, texture.shape[1] - x)
    texture[y:y + h, x:x + w] = patch[:h, :w]


def _box(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, px_per_m: int) -> list[Quad]:
    """The five visible faces (no bottom) of an axis-aligned box."""
    dx, dy, dz = hi - lo
    ex, ey, ez = np.eye(3)
    faces = [  # origin, u, v, shade
        (np.array([lo[0], lo[1], hi[2]]), ex * dx, ey * dy, 1.0),  # top
        (np.array([lo[0], lo[1], hi[2]]), ex * dx, -ez * dz, 0.85),  # front (y = lo)
        (np.array([hi[0], lo[1], hi[2]]), ey * dy, -ez * dz, 0.7),  # right (x = hi)
        (np.array([lo[0], hi[1], hi[2]]), ex * dx, -ez * dz, 0.8),  # back (y = hi)
        (np.array([lo[0], lo[1], hi[2]]), ey * dy, -ez * dz, 0.75),  # left (x = lo)
    ]
    out = []
    for origin, u, v, shade in faces:
        w = max(32, int(np.linalg.norm(u) * px_per_m))
        h = max(32, int(np.linalg.norm(v) * px_per_m))
        out.append(Quad(origin, u, v, procedural_texture(rng, w, h), shade))
    return out


def build_scene(seed: int) -> list[Quad]:
    """Floor, back and left walls and two boxes, with procedural + sample-photo textures."""
    rng = np.random.default_rng(seed)
    ppm = 256  # texture pixels per metre (about 2x the image sampling rate at 4 m)
    floor = procedural_texture(rng, 4 * ppm, 4 * ppm)
    back = procedural_texture(rng, 4 * ppm, 2 * ppm)
    left = procedural_texture(rng, 4 * ppm, 2 * ppm)
    _paste(back, _sample_photo("grace_hopper.jpg"), 380, 40, 300)
    _paste(left, _sample_photo("logo2.png"), 300, 120, 420)
    _paste(floor, _sample_photo("Minduka_Present_Blue_Pack.png"), 620, 300, 160)
    ex, ey, ez = np.eye(3)
    quads = [
        Quad(np.array([-2.0, -1.5, 0.0]), 4 * ex, 4 * ey, floor, 0.95),
        Quad(np.array([-2.0, 2.5, 2.0]), 4 * ex, -2 * ez, back, 0.9),
        Quad(np.array([-2.0, -1.5, 2.0]), 4 * ey, -2 * ez, left, 0.8),
    ]
    quads += _box(rng, np.array([-0.3, 0.3, 0.0]), np.array([0.5, 1.1, 0.7]), ppm)
    quads += _box(rng, np.array([-1.5, -0.6, 0.0]), np.array([-0.9, 0.0, 0.4]), ppm)
    return quads


def look_at(center: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])
            ) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t) of a camera at `center` looking at `target` (x right, y down, z forward)."""
    z = target - center
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ center


def camera_poses(num_views: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cameras on an arc in front of the scene, looking at its centre, with varying height."""
    target = np.array([-0.2, 0.9, 0.5])
    poses = []
    for i, a in enumerate(np.linspace(np.radians(-112), np.radians(-42), num_views)):
        center = target + np.array([3.6 * np.cos(a), 3.6 * np.sin(a), 0.9 + 0.25 * np.sin(1.7 * i)])
        poses.append(look_at(center, target + np.array([0.0, 0.0, 0.1 * np.cos(i)])))
    return poses


def render(quads: list[Quad], K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int, height: int,
           supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the scene: (RGB uint8 (H, W, 3), camera-z depth float32 (H, W), 0 where nothing is hit)."""
    n = supersample
    offsets = (np.arange(n) + 0.5) / n  # sub-pixel sample positions, COLMAP convention
    color = np.zeros((height, width, 3), np.float32)
    for oy in offsets:
        for ox in offsets:
            rgb, _ = _cast(quads, K, R, t, width, height, ox, oy)
            color += rgb
    _, depth = _cast(quads, K, R, t, width, height, 0.5, 0.5)
    return np.clip(color / n ** 2 * 255 + 0.5, 0, 255).astype(np.uint8), depth


def _cast(quads: list[Quad], K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int, height: int,
          ox: float, oy: float) -> tuple[np.ndarray, np.ndarray]:
    """One ray per pixel at offset (ox, oy) from the pixel corner; returns colour and camera-z depth."""
    xs, ys = np.meshgrid(np.arange(width) + ox, np.arange(height) + oy)
    rays_cam = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones_like(xs)], -1)
    rays = rays_cam @ R  # world directions (R^T d), z_cam = 1 so the ray parameter is the depth
    center = -R.T @ t
    best = np.full((height, width), np.inf)
    color = np.zeros((height, width, 3), np.float32)
    # sky-like background gradient
    color[:] = np.linspace(0.55, 0.8, height)[:, None, None] * np.array([0.8, 0.9, 1.0], np.float32)
    for q in quads:
        normal = np.cross(q.u, q.v)
        denom = rays @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            dist = ((q.origin - center) @ normal) / denom
        p = center + dist[..., None] * rays - q.origin
        a = p @ q.u / (q.u @ q.u)
        b = p @ q.v / (q.v @ q.v)
        hit = (dist > 1e-6) & (dist < best) & (a >= 0) & (a <= 1) & (b >= 0) & (b <= 1)
        if not hit.any():
            continue
        th, tw = q.texture.shape[:2]
        mx = (a * tw - 0.5).astype(np.float32)
        my = (b * th - 0.5).astype(np.float32)
        sampled = cv2.remap(q.texture, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        color[hit] = sampled[hit] * q.shade
        best[hit] = dist[hit]
    depth = np.where(np.isfinite(best), best, 0.0).astype(np.float32)
    return color, depth


def load_depth(path: Path) -> np.ndarray:
    """Depth map (H, W) float32 in GT units from a depth/*.npz file (0 = no surface)."""
    with np.load(path) as data:
        depth = data["depth"].astype(np.float32)
        return depth * float(data["scale"]) if "scale" in data else depth


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Hamilton quaternion (w, x, y, z) of a rotation matrix (COLMAP images.txt order)."""
    import pycolmap

    x, y, z, w = pycolmap.Rotation3d(R).quat
    q = np.array([w, x, y, z])
    return q if q[0] >= 0 else -q


def write_gt_model(directory: Path, K: np.ndarray, width: int, height: int,
                   names: list[str], poses: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """COLMAP text model with one PINHOLE camera, world-to-camera poses and no points."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        f"1 PINHOLE {width} {height} {K[0, 0]:.6f} {K[1, 1]:.6f} {K[0, 2]:.6f} {K[1, 2]:.6f}\n")
    lines = ["# IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME (world-to-camera), then an empty line"]
    for i, (name, (R, t)) in enumerate(zip(names, poses), start=1):
        q = rotmat_to_qvec(R)
        lines.append(f"{i} " + " ".join(f"{v:.12f}" for v in (*q, *t)) + f" 1 {name}")
        lines.append("")
    (directory / "images.txt").write_text("\n".join(lines) + "\n")
    (directory / "points3D.txt").write_text("# 3D point list (empty: this model holds cameras only)\n")


def main(conf: dict | None, output: Path) -> Path:
    """Render the sample scene into `output` (images/, gt/, depth/) and return `output`."""
    from l2m.config import merge_conf

    conf = merge_conf(default_conf, conf, "sample_scene")
    output = Path(output)
    w, h, f = conf["width"], conf["height"], conf["focal"]
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    quads = build_scene(conf["seed"])
    poses = camera_poses(conf["num_views"])
    names = [f"view_{i:02d}.jpg" for i in range(len(poses))]
    for sub in ("images", "depth"):
        (output / sub).mkdir(parents=True, exist_ok=True)
    for name, (R, t) in zip(names, poses):
        rgb, depth = render(quads, K, R, t, w, h, conf["supersample"])
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, conf["jpeg_quality"]])
        assert ok
        _atomic_write(output / "images" / name, buf.tobytes())
        tmp = output / "depth" / (Path(name).stem + ".tmp.npz")
        # uint16 with a scale: 0.1 mm steps here, where float16 (0.05 % relative) would shift matches ~0.1 px
        scale = float(depth.max()) / 65000.0
        np.savez_compressed(tmp, depth=np.round(depth / scale).astype(np.uint16), scale=scale)
        os.replace(tmp, output / "depth" / (Path(name).stem + ".npz"))
    write_gt_model(output / "gt", K, w, h, names, poses)
    return output


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=Path("datasets/samples/toybox"))
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. num_views=6")
    args = parser.parse_args()
    from l2m.config import parse_overrides

    out = main(parse_overrides(args.overrides), args.output)
    print(f"Sample scene written to {out}")


if __name__ == "__main__":
    cli()
