"""Lift one image to a 3D mesh with its depth and render it from another camera (pure torch, CPU and CUDA).

Conventions (shared by the whole data engine):
* Pixel coordinates: the centre of pixel (row i, column j) is (x, y) = (j + 0.5, i + 0.5) (COLMAP convention);
  intrinsics K are in pixels of that convention, so cx = W/2 for a centred principal point. The normalised
  coordinates used by the matcher are x_n = 2x/W - 1, i.e. pixel centres at -1 + (2j+1)/W.
* T_1to2 (4x4) maps camera-1 coordinates to camera-2 coordinates: X2 = R X1 + t. Cameras look along +z.
* Depth is z (not ray length); 0 means "no depth" everywhere.

Rendering is a z-buffered triangle rasteriser over the pixel-grid mesh (two triangles per pixel quad, spec
§8.4) with perspective-correct barycentric interpolation. Because 1/z is affine in screen space on a planar
triangle, the rendered depth of a planar scene is exact, which the correspondence tests rely on.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

TEAR_THRESHOLD = math.log(10.0) / 10.0  # spec §8.4: visible iff exp(-10 g) > 0.1


def normalize_disparity(disp: Tensor) -> Tensor:
    """Min-max normalise a disparity map (..., H, W) to [0, 1] per map (non-finite values become 0 first)."""
    d = torch.nan_to_num(disp.float(), nan=0.0, posinf=0.0, neginf=0.0)
    lo = d.flatten(-2).amin(-1)[..., None, None]
    hi = d.flatten(-2).amax(-1)[..., None, None]
    return (d - lo) / (hi - lo).clamp_min(1e-12)


def disparity_to_depth(disp: Tensor, shift: float = 1e-3, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Spec §8.2: min-max normalise, add `shift`, z = 1/(disp + eps); returns (depth in [~1, ~900], disp01)."""
    d01 = normalize_disparity(disp)
    return 1.0 / (d01 + shift + eps), d01


def tear_mask(disp01: Tensor, threshold: float = TEAR_THRESHOLD, normalized_sobel: bool = True) -> Tensor:
    """Vertices kept by the spec §8.4 tear rule: Sobel magnitude of the [0,1] disparity below `threshold`.

    disp01: (..., H, W). With `normalized_sobel` the kernel is divided by 8 (a ramp of slope s gives |s|, a step
    of height h gives h/2 on both sides); returns a bool map of the same shape (True = vertex visible).
    """
    shape = disp01.shape
    x = disp01.reshape(-1, 1, *shape[-2:]).float()
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
    if normalized_sobel:
        kx = kx / 8.0
    k = torch.stack([kx, kx.t()])[:, None]
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)
    mag = g.pow(2).sum(1).sqrt()
    return (mag < threshold).reshape(shape)


def intrinsics_from_focal(f_norm: float | Tensor, height: int, width: int) -> Tensor:
    """Pixel K with fx = fy = f_norm * width and the principal point at the image centre (W/2, H/2)."""
    f = torch.as_tensor(f_norm, dtype=torch.float64) * width
    K = torch.zeros(3, 3, dtype=torch.float64)
    K[0, 0] = K[1, 1] = f
    K[0, 2], K[1, 2], K[2, 2] = width / 2.0, height / 2.0, 1.0
    return K


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """(H, W, 2) pixel-centre coordinates (x, y) = (j + 0.5, i + 0.5)."""
    y, x = torch.meshgrid(torch.arange(height, device=device, dtype=dtype) + 0.5,
                          torch.arange(width, device=device, dtype=dtype) + 0.5, indexing="ij")
    return torch.stack([x, y], -1)


def unproject(depth: Tensor, K: Tensor, xy: Tensor | None = None) -> Tensor:
    """3D camera points (..., 3) of pixels `xy` (..., 2; default: all pixel centres of depth (H, W))."""
    if xy is None:
        xy = pixel_grid(*depth.shape[-2:], device=depth.device, dtype=depth.dtype)
    K = K.to(depth)
    x = (xy[..., 0] - K[0, 2]) / K[0, 0]
    y = (xy[..., 1] - K[1, 2]) / K[1, 1]
    return torch.stack([x * depth, y * depth, depth], -1)


def transform(points: Tensor, T: Tensor) -> Tensor:
    """Apply a 4x4 rigid transform to points (..., 3)."""
    T = T.to(points)
    return points @ T[:3, :3].T + T[:3, 3]


def project(points: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel coordinates (..., 2) and depth z (...) of camera points (..., 3); z <= 0 gives non-finite xy."""
    K = K.to(points)
    z = points[..., 2]
    x = K[0, 0] * points[..., 0] / z + K[0, 2]
    y = K[1, 1] * points[..., 1] / z + K[1, 2]
    return torch.stack([x, y], -1), z


_FACE_CACHE: dict = {}


def grid_faces(height: int, width: int, device) -> Tensor:
    """(2(H-1)(W-1), 3) vertex indices of the pixel-grid mesh; face 2q+k is triangle k of quad q."""
    key = (height, width, str(device))
    if key not in _FACE_CACHE:
        idx = torch.arange(height * width, device=device).reshape(height, width)
        v00, v01 = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1)
        v10, v11 = idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1)
        faces = torch.stack([torch.stack([v00, v10, v01], -1), torch.stack([v01, v10, v11], -1)], 1)
        _FACE_CACHE.clear()
        _FACE_CACHE[key] = faces.reshape(-1, 3)
    return _FACE_CACHE[key]


def rasterize(xy: Tensor, z: Tensor, faces: Tensor, out_hw: tuple[int, int], near: float = 0.01,
              max_face_pixels: int = 4096) -> tuple[Tensor, Tensor, Tensor]:
    """Z-buffered rasterisation of triangles sampled at pixel centres.

    xy: (V, 2) projected vertices in pixels (centre convention), z: (V,) depths, faces: (F, 3) long.
    Returns face index per pixel (h, w; -1 = empty), perspective-correct barycentrics (h, w, 3) and depth
    (h, w; 0 = empty). Faces with a vertex nearer than `near` or a bounding box above `max_face_pixels` pixels
    are skipped (such faces only occur on tears or behind the camera).
    """
    h, w = out_hw
    dev = xy.device
    p = (xy - 0.5).float()  # pixel-index space: centre of pixel (i, j) at (j, i)
    zf = z.float()
    fz = zf[faces]
    ok = (fz > near).all(1) & torch.isfinite(p[faces]).all(2).all(1)
    fid = torch.nonzero(ok).squeeze(1)
    fp = p[faces[fid]]  # (F', 3, 2)
    lo = fp.amin(1)
    hi = fp.amax(1)
    eps = 1e-3  # pixel centres within eps of an edge count as covered (float error on exact edges)
    x0 = (lo[:, 0] - eps).ceil().clamp(0, w - 1)
    x1 = (hi[:, 0] + eps).floor().clamp(-1, w - 1)
    y0 = (lo[:, 1] - eps).ceil().clamp(0, h - 1)
    y1 = (hi[:, 1] + eps).floor().clamp(-1, h - 1)
    nx = (x1 - x0 + 1).clamp_min(0)
    ny = (y1 - y0 + 1).clamp_min(0)
    n = (nx * ny)
    keep = (n > 0) & (n <= max_face_pixels) & (hi[:, 0] >= 0) & (lo[:, 0] <= w - 1) \
        & (hi[:, 1] >= 0) & (lo[:, 1] <= h - 1)
    fid, fp, y0 = fid[keep], fp[keep], y0[keep].long()
    empty = (torch.full((h, w), -1, dtype=torch.long, device=dev), torch.zeros(h, w, 3, device=dev),
             torch.zeros(h, w, device=dev))
    if fid.numel() == 0:
        return empty
    # Enumerate (face, row) pairs, then the pixels of each row inside the triangle's x-span on that row
    # (thin stretched triangles would waste most of a bounding-box enumeration).
    ny = ny[keep].long()
    row_face = torch.repeat_interleave(torch.arange(fid.numel(), device=dev), ny)
    row_y = y0[row_face] + (torch.arange(int(ny.sum()), device=dev) - (torch.cumsum(ny, 0) - ny)[row_face])
    ry = row_y.float()
    rfp = fp[row_face]
    xs_lo = torch.full_like(ry, float("inf"))
    xs_hi = torch.full_like(ry, -float("inf"))
    for i, j in ((0, 1), (1, 2), (2, 0)):
        xi, yi, xj, yj = rfp[:, i, 0], rfp[:, i, 1], rfp[:, j, 0], rfp[:, j, 1]
        dy = yj - yi
        on = (ry - yi.clamp(max=yj) + eps >= 0) & (yi.clamp(min=yj) + eps - ry >= 0)
        t = ((ry - yi) / torch.where(dy.abs() > 1e-12, dy, torch.ones_like(dy))).clamp(0, 1)
        x_at = torch.where(dy.abs() > 1e-12, xi + t * (xj - xi), torch.minimum(xi, xj))
        x_at2 = torch.where(dy.abs() > 1e-12, x_at, torch.maximum(xi, xj))
        xs_lo = torch.where(on, torch.minimum(xs_lo, x_at), xs_lo)
        xs_hi = torch.where(on, torch.maximum(xs_hi, x_at2), xs_hi)
    rx0 = (xs_lo - eps).ceil().clamp(0, w - 1)
    rx1 = (xs_hi + eps).floor().clamp(-1, w - 1)
    rn = torch.nan_to_num(rx1 - rx0 + 1, nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0).long()
    row_idx = torch.repeat_interleave(torch.arange(rn.numel(), device=dev), rn)
    local = torch.arange(int(rn.sum()), device=dev) - (torch.cumsum(rn, 0) - rn)[row_idx]
    cand_face = row_face[row_idx]
    px = rx0.long()[row_idx] + local
    py = row_y[row_idx]
    a, b, c = fp[cand_face, 0], fp[cand_face, 1], fp[cand_face, 2]
    qx, qy = px.float(), py.float()

    def edge(u: Tensor, v: Tensor) -> Tensor:  # twice the signed area of (u, v, q)
        return (v[:, 0] - u[:, 0]) * (qy - u[:, 1]) - (v[:, 1] - u[:, 1]) * (qx - u[:, 0])

    wa, wb, wc = edge(b, c), edge(c, a), edge(a, b)
    area = wa + wb + wc
    tol = 1e-4 * area.abs()
    inside = (area.abs() > 1e-12) & (((wa >= -tol) & (wb >= -tol) & (wc >= -tol))
                                     | ((wa <= tol) & (wb <= tol) & (wc <= tol)))
    sel = torch.nonzero(inside).squeeze(1)
    bary = torch.stack([wa[sel], wb[sel], wc[sel]], 1) / area[sel, None]
    cf = cand_face[sel]
    inv_z = bary / fz[fid[cf]]
    denom = inv_z.sum(1)
    depth = 1.0 / denom
    bary_pc = inv_z / denom[:, None]
    pix = py[sel] * w + px[sel]
    valid = depth > near
    pix, depth, bary_pc, cf = pix[valid], depth[valid], bary_pc[valid], cf[valid]
    zbuf = torch.full((h * w,), float("inf"), device=dev).scatter_reduce(0, pix, depth, "amin")
    is_min = depth <= zbuf[pix]
    order = torch.arange(pix.numel(), device=dev)
    win = torch.full((h * w,), -1, dtype=torch.long, device=dev).scatter_reduce(
        0, pix[is_min], order[is_min], "amax")
    hit = win >= 0
    face_map = torch.full((h * w,), -1, dtype=torch.long, device=dev)
    bary_map = torch.zeros(h * w, 3, device=dev)
    depth_map = torch.zeros(h * w, device=dev)
    wi = win[hit]
    face_map[hit] = fid[cf[wi]]
    bary_map[hit] = bary_pc[wi]
    depth_map[hit] = depth[wi]
    return face_map.reshape(h, w), bary_map.reshape(h, w, 3), depth_map.reshape(h, w)


def interpolate(attrs: Tensor, faces: Tensor, face_map: Tensor, bary: Tensor) -> Tensor:
    """Barycentric interpolation of vertex attributes (V, C) into (h, w, C); 0 on empty pixels."""
    hit = face_map >= 0
    out = attrs.new_zeros(*face_map.shape, attrs.shape[1])
    v = faces[face_map[hit]]  # (P, 3)
    out[hit] = (attrs[v] * bary[hit][..., None].to(attrs)).sum(1)
    return out


def render_view(depth: Tensor, K1: Tensor, K2: Tensor, T_1to2: Tensor, out_hw: tuple[int, int],
                vertex_visible: Tensor | None = None, vertex_attrs: Tensor | None = None,
                near: float = 0.01) -> dict[str, Tensor]:
    """Render the pixel-grid mesh of `depth` (H, W; 0 = no vertex) from camera 2.

    Faces with a torn vertex (`vertex_visible` False) are not drawn. Returns `depth` (h, w; 0 = no surface),
    `visible` (h, w; interpolated vertex visibility, the spec's hole test is visible < 0.5), `source_xy` (h, w, 2; camera-1 pixel coordinates of the surface point),
    `attrs` (h, w, C) if `vertex_attrs` (H, W, C) is given, and `covered` (h, w bool).
    """
    H, W = depth.shape
    dev = depth.device
    pts = unproject(depth.float(), K1.float())
    xy2, z2 = project(transform(pts, T_1to2.float()), K2.float())
    xy2, z2 = xy2.reshape(-1, 2), z2.reshape(-1)
    z2 = torch.where(depth.reshape(-1) > 0, z2, torch.zeros_like(z2))  # no vertex -> culled as z <= near
    faces = grid_faces(H, W, dev)
    if vertex_visible is not None:
        # A face touching a torn vertex is a hole (spec: interpolated visibility < 0.5, up to a sub-pixel band);
        # such faces are stretched across depth edges, so skipping them also keeps rasterisation cheap.
        faces = faces[vertex_visible.reshape(-1)[faces].all(1)]
    face_map, bary, depth2 = rasterize(xy2, z2, faces, out_hw, near=near)
    vis = torch.ones(H, W, device=dev) if vertex_visible is None else vertex_visible.float()
    src = pixel_grid(H, W, device=dev)
    cols = [src.reshape(-1, 2), vis.reshape(-1, 1)]
    if vertex_attrs is not None:
        cols.append(vertex_attrs.reshape(H * W, -1).float())
    out = interpolate(torch.cat(cols, 1), faces, face_map, bary)
    res = {"depth": depth2, "source_xy": out[..., :2], "visible": out[..., 2], "covered": face_map >= 0}
    if vertex_attrs is not None:
        res["attrs"] = out[..., 3:]
    return res


def sample_image(image: Tensor, xy: Tensor) -> Tensor:
    """Bilinear sample of image (C, H, W) at pixel coordinates xy (h, w, 2) (centre convention) -> (C, h, w)."""
    C, H, W = image.shape
    g = torch.stack([2 * xy[..., 0] / W - 1, 2 * xy[..., 1] / H - 1], -1)
    return F.grid_sample(image[None].float(), g[None].float(), mode="bilinear", padding_mode="border",
                         align_corners=False)[0]
