"""Pictures people look at: PNG grids, GIFs of the reverse process, scatter plots of 2-D samples."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .utils import atomic_save  # noqa: F401  (re-exported: pictures and other outputs are written through it)


# Picture files by suffix: the format written is the one the name promises (x.jpg is a JPEG).
PICTURE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}


def picture_format(path) -> str:
    """The PIL format for a picture path, or a one-line error naming the suffixes that work."""
    fmt = PICTURE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"picture: {Path(path).name!r} should end in one of {', '.join(PICTURE_FORMATS)}")
    return fmt


def _save_image(im: Image.Image, path) -> Path:
    fmt = picture_format(path)
    if fmt == "JPEG" and im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    return atomic_save(path, lambda p: im.save(p, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {})))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] images (N, C, H, W) to uint8 (N, H, W, C)."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def image_grid(x: torch.Tensor, nrow: Optional[int] = None, scale: int = 1, pad: int = 2) -> Image.Image:
    """A grid of images with `nrow` images a row, each enlarged `scale` times."""
    if x.ndim != 4:
        raise ValueError(f"image_grid: expected (N, C, H, W) images, got shape {tuple(x.shape)}")
    imgs = to_uint8(x)
    n, h, w, c = imgs.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = imgs[i]
    im = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    return im.resize((im.width * scale, im.height * scale), Image.NEAREST) if scale > 1 else im


def scatter_image(points: torch.Tensor, size: int = 320, lim: float = 1.1, color=(30, 90, 200)) -> Image.Image:
    """A scatter plot of points in [-lim, lim]^2: 2-D points, or the first two coordinates of longer vectors."""
    im = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, size - 1, size - 1], outline=(180, 180, 180))
    p = points.detach().float().cpu().reshape(len(points), -1).numpy()
    p = p[:, :2] if p.shape[1] >= 2 else np.concatenate([p, np.zeros_like(p)], 1)  # the first two coordinates
    px = (p + lim) / (2 * lim) * (size - 1)
    for x, y in px:
        if 0 <= x < size and 0 <= y < size:
            draw.point((float(x), float(size - 1 - y)), fill=color)
    return im


def picture(x: torch.Tensor, nrow: Optional[int] = None, scale: int = 1) -> Image.Image:
    """An image grid for image batches, a scatter plot for 2-D points."""
    return image_grid(x, nrow, scale) if x.ndim == 4 else scatter_image(x)


def save_picture(x: torch.Tensor, path, nrow: Optional[int] = None, scale: int = 1) -> Path:
    """Save a batch as a picture (grid or scatter plot) in the format its suffix names, atomically."""
    return _save_image(picture(x, nrow, scale), path)


def save_row_strip(frames: Sequence[torch.Tensor], path, scale: int = 1) -> Path:
    """One row per sample, one column per frame: the forward or reverse process over time."""
    if frames[0].ndim == 4:
        stacked = torch.stack(list(frames), 1).flatten(0, 1)  # sample-major
        im = image_grid(stacked, nrow=len(frames), scale=scale)
    else:
        tiles = [scatter_image(f, size=200) for f in frames]
        im = Image.new("RGB", (200 * len(tiles), 200), "white")
        for i, tile in enumerate(tiles):
            im.paste(tile, (200 * i, 0))
    return _save_image(im, path)


def _to_palette(im: Image.Image) -> Image.Image:
    """A 'P' image with up to 256 colours chosen for this image (exact for up to 256 distinct colours)."""
    if im.mode == "L":
        return im.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    return im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def save_gif(frames: Sequence[torch.Tensor], path, nrow: Optional[int] = None, scale: int = 1,
             duration_ms: int = 80) -> Path:
    """An animated GIF of a sequence of batches (e.g. x_t along the reverse process); the last frame lingers."""
    # an adaptive palette per frame, without dithering: grey frames stay exact, RGB frames and plots keep their colours
    # (the default conversion maps to the web palette and dithers)
    ims = [_to_palette(picture(f, nrow, scale)) for f in frames]
    durations = [duration_ms] * (len(ims) - 1) + [1500]
    return atomic_save(path, lambda p: ims[0].save(p, format="GIF", save_all=True, append_images=ims[1:],
                                                   duration=durations, loop=0))
