"""Find and read the images of a scene: recursive listing with reasons for every skipped file, robust decoding.

Names are POSIX paths relative to the image root (they become COLMAP image names and hloc HDF5 keys).
`read_image` always returns RGB uint8 (H, W, 3) with the EXIF orientation applied, whatever the file holds:
grayscale, palette, RGBA (composited on white), CMYK, 16-bit or float (rescaled by the image's own value range).

The listing stage of `reconstruct` runs alone as ``python -m l2m_sfm.images --images DIR``.
"""
from __future__ import annotations

import os
import unicodedata
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")
# Formats PIL may report for files we accept (MPO = multi-picture JPEG written by many cameras).
_FORMATS = {"JPEG", "MPO", "PNG", "TIFF", "WEBP", "BMP"}
_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> PIL transpose that makes the image upright (same table as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# camera formats PIL cannot decode: say what they are instead of "not an image"
_UNREAD_PHOTO_FORMATS = {".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF", ".cr2": "RAW (Canon)", ".cr3": "RAW (Canon)",
                         ".nef": "RAW (Nikon)", ".arw": "RAW (Sony)", ".raf": "RAW (Fujifilm)", ".orf": "RAW (Olympus)",
                         ".rw2": "RAW (Panasonic)", ".dng": "RAW (DNG)"}
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, not come back grey at the bottom


class ImageReadError(Exception):
    """An image file that cannot be decoded; `path` and `reason` say which and why."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"Cannot read image {self.path}: {reason}. Fix or remove the file.")


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # broken EXIF block: treat as upright rather than refusing the image
        return 1


def _open(path: Path) -> Image.Image:
    """Open lazily with a readable error for empty, non-image and unsupported files."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageReadError(path, f"cannot access file ({e.strerror})") from e
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        img = Image.open(path)
    except UnidentifiedImageError as e:
        hint = _UNREAD_PHOTO_FORMATS.get(path.suffix.lower())
        if hint:
            raise ImageReadError(path, f"{hint} photos are not read; convert them to JPEG or PNG") from e
        raise ImageReadError(path, "not an image: unknown file format") from e
    except Image.DecompressionBombError as e:
        raise ImageReadError(path, f"image too large ({e})") from e
    except OSError as e:
        raise ImageReadError(path, f"not an image: {e}") from e
    if img.format not in _FORMATS:
        img.close()
        raise ImageReadError(path, f"not an image: unsupported format {img.format} (use JPEG/PNG/TIFF/WebP)")
    return img


def _corrupt(img: Image.Image, path: Path, e: Exception) -> ImageReadError:
    kind = "corrupt JPEG" if img.format in ("JPEG", "MPO") else f"corrupt {img.format}"
    return ImageReadError(path, f"{kind}: {e}")


def _decode(img: Image.Image, path: Path) -> None:
    """Force a full decode so truncated or damaged files fail here, not later inside a matcher."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns on odd EXIF; the pixels are what matter
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _corrupt(img, path, e) from e


def _bit_depth_16(img: Image.Image, path: Path) -> bool:
    """True for 16-bit colour PNG/TIFF, which PIL silently reduces to 8 bits by dropping the low byte."""
    if img.mode not in ("RGB", "RGBA"):
        return False
    if img.format == "PNG":
        with open(path, "rb") as f:
            header = f.read(25)
        return len(header) == 25 and header[24] == 16
    if img.format == "TIFF":
        bits = getattr(img, "tag_v2", {}).get(258, 8)
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) > 8
    return False


def _rescale(arr: np.ndarray) -> np.ndarray:
    """Map a high-bit-depth or float array to uint8 by its own min..max range (not clipping at 255)."""
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros(arr.shape, np.uint8)
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    out = (np.where(finite, arr, lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> RGB uint8; transparency is composited on white."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = _rescale(np.asarray(img))
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode != "RGB":
        img = img.convert("RGB")  # L, 1, P, CMYK (PIL undoes Adobe's inverted CMYK), YCbCr, LAB, HSV
    return np.asarray(img)


def _read_16bit_colour(path: Path) -> np.ndarray:
    import cv2  # only for 16-bit colour files, which PIL cannot return at full depth

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3:
        raise ImageReadError(path, "OpenCV could not decode this 16-bit colour image")
    rgb = arr[..., 2::-1]  # BGR(A) -> RGB, alpha dropped (16-bit alpha is rare and not photographic)
    return _rescale(rgb)


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3), EXIF orientation applied; raise ImageReadError if unreadable."""
    path = Path(path)
    img = _open(path)
    with img:
        _decode(img, path)
        orientation = _orientation(img)
        if _bit_depth_16(img, path):
            arr = _read_16bit_colour(path)
            if orientation in _TRANSPOSE:
                arr = np.asarray(Image.fromarray(arr).transpose(_TRANSPOSE[orientation]))
            return np.array(arr, order="C")
        try:
            upright = ImageOps.exif_transpose(img) if orientation != 1 else img
            arr = _to_rgb8(upright)
        except (OSError, ValueError) as e:
            raise _corrupt(img, path, e) from e
    return np.array(arr, order="C")  # a writable copy (PIL's buffer is read-only)


class ImageReader:
    """`read_image` of names under one folder, keeping the last `keep` images (pairs come grouped by image)."""

    def __init__(self, image_dir: Path, keep: int = 4) -> None:
        from collections import OrderedDict

        self.image_dir, self.keep = Path(image_dir), keep
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, name: str) -> np.ndarray:
        if name not in self._images:
            self._images[name] = read_image(self.image_dir / name)
            if len(self._images) > self.keep:
                self._images.popitem(last=False)
        return self._images[name]


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels after EXIF orientation, read from the header only."""
    img = _open(Path(path))
    with img:
        w, h = img.size
        return (h, w) if _orientation(img) in (5, 6, 7, 8) else (w, h)


def check_image(path: Path) -> str | None:
    """Why `path` is not a usable image (None if it is); decodes the whole pixel stream (JPEG at 1/8 scale)."""
    try:
        img = _open(Path(path))
    except ImageReadError as e:
        return e.reason
    with img:
        try:
            if img.format in ("JPEG", "MPO"):
                # DCT-domain downscaling still entropy-decodes every block, so truncation is found 8x cheaper.
                img.draft("RGB", (max(1, img.size[0] // 8), max(1, img.size[1] // 8)))
            _decode(img, Path(path))
        except ImageReadError as e:
            return e.reason
    return None


def _pair_key(name: str) -> str:
    return name.replace("/", "-")


def list_images(root: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Readable images under `root` (sorted relative POSIX names) and every other file with the reason it is skipped.

    Hidden files and folders (starting with '.') are ignored. A name whose hloc pair key ('/' replaced by '-')
    equals an earlier one is skipped, and so is a name with a line break or control character. Names with spaces
    or non-ASCII characters are kept (pair files encode them, see l2m_sfm.pairs.encode_name).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} does not exist or is not a folder; pass --images DIR")
    files: list[str] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop or a folder linked twice: list it once
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        files += [(rel / f).as_posix() for f in filenames if not f.startswith(".")]
    found: list[str] = []
    skipped: list[tuple[str, str]] = []
    keys: dict[str, str] = {}
    for name in sorted(files):
        if any(unicodedata.category(c) == "Cc" for c in name):
            skipped.append((name, "name contains a line break or control character (COLMAP's model and pair "
                                  "files are line-based); rename the file"))
            continue
        reason = check_image(root / name)
        if reason is not None:
            skipped.append((name, reason))
            continue
        key = _pair_key(name)
        if key in keys:
            skipped.append((name, f"pair-name collision with {keys[key]} ('/' and '-' give the same hloc key); "
                                  "rename one of them"))
            continue
        keys[key] = name
        found.append(name)
    return found, skipped
