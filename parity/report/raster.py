"""A small raster drawing layer for the per-case figures: PIL images, matplotlib's fonts and colours.

The report draws ~8 figures per case, and matplotlib spends most of each figure laying out
tick labels and text (~0.1 s per plot on an idle core, several times that on a loaded 2-core
machine). Per-case figures are therefore drawn here: image panels are NumPy arrays coloured
through matplotlib's colormaps, text uses matplotlib's DejaVu Sans through PIL, and line plots
are drawn at 2x and downsampled (anti-aliasing). The hub-level figures (heat map, patch grids)
still use matplotlib's Agg canvas.

Coordinates are pixels of the final image, origin top left.
"""
from __future__ import annotations

import functools
import io
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .hub import write_bytes_atomic

RGB = Tuple[int, int, int]
BLACK: RGB = (0, 0, 0)
GREY: RGB = (200, 200, 200)


@functools.lru_cache(maxsize=None)
def font(px: int):
    """matplotlib's DejaVu Sans at ``px`` pixels (PIL, which matplotlib itself depends on)."""
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), px)


@functools.lru_cache(maxsize=None)
def colour(name: str) -> RGB:
    """A matplotlib colour ("tab:blue", "crimson", "C3", ...) as 8-bit RGB."""
    from matplotlib.colors import to_rgb

    return tuple(int(round(255 * c)) for c in to_rgb(name))  # type: ignore[return-value]


class Canvas:
    """An RGB image drawn at ``scale`` x its final size and saved downsampled to it."""

    def __init__(self, width: int, height: int, scale: int = 1):
        from PIL import Image, ImageDraw

        self.w, self.h, self.s = int(width), int(height), int(scale)
        self.img = Image.new("RGB", (self.w * self.s, self.h * self.s), "white")
        self.draw = ImageDraw.Draw(self.img)

    def paste(self, rgb: np.ndarray, x: int, y: int) -> None:
        """Paste an (h, w, 3) uint8 array with its top left corner at (x, y) (scale 1 only)."""
        from PIL import Image

        self.img.paste(Image.fromarray(np.ascontiguousarray(rgb)), (int(x) * self.s, int(y) * self.s))

    def text(self, x: float, y: float, text: str, size: float = 10, anchor: str = "la", fill: RGB = BLACK,
             rotate: float = 0) -> None:
        """Text at (x, y); ``anchor`` as in PIL ("la" left-ascender, "mm" middle, "rm" right-middle,
        "md" middle-descender, ...); ``rotate`` degrees counter-clockwise about the anchor point."""
        f = font(max(6, int(round(size * 1.25 * self.s))))
        X, Y = x * self.s, y * self.s
        if not rotate:
            for k, line in enumerate(text.split("\n")):
                self.draw.text((X, Y + k * f.size * 1.2), line, font=f, fill=fill, anchor=anchor)
            return
        from PIL import Image, ImageDraw

        l, t, r, b = f.getbbox(text)
        tile = Image.new("L", (r - l + 4, b - t + 4), 0)
        ImageDraw.Draw(tile).text((2 - l, 2 - t), text, font=f, fill=255)
        tile = tile.rotate(rotate, expand=True, resample=Image.BICUBIC)
        w, h = tile.size
        ax, ay = {"l": 0, "m": w / 2, "r": w}[anchor[0]], {"a": 0, "t": 0, "m": h / 2, "d": h, "b": h}[anchor[1]]
        if rotate > 0 and anchor[0] == "r":  # a right-anchored slanted label ends at its top-right corner
            ay = 0
        self.img.paste(Image.new("RGB", (w, h), fill), (int(X - ax), int(Y - ay)), tile)

    def line(self, pts: Sequence[Tuple[float, float]], fill: RGB, width: float = 1.0, dash: float = 0) -> None:
        s = self.s
        pts = [(x * s, y * s) for x, y in pts]
        if not dash:
            self.draw.line(pts, fill=fill, width=max(1, int(round(width * s))), joint="curve")
            return
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            n = max(1, int(math.hypot(x1 - x0, y1 - y0) / (dash * s)))
            for i in range(0, n, 2):
                a, b = i / n, min((i + 1) / n, 1.0)
                self.draw.line([(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a), (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)],
                               fill=fill, width=max(1, int(round(width * s))))

    def rect(self, x0: float, y0: float, x1: float, y1: float, outline: Optional[RGB] = BLACK,
             fill: Optional[RGB] = None, width: float = 1.0) -> None:
        s = self.s
        self.draw.rectangle([x0 * s, y0 * s, x1 * s, y1 * s], outline=outline, fill=fill,
                            width=max(1, int(round(width * s))))

    def marker(self, x: float, y: float, shape: str, fill: Optional[RGB], size: float = 6.0,
               edge: Optional[RGB] = None, width: float = 1.0) -> None:
        """Marker centred at (x, y): "o" circle, "s" square, "^"/"v" triangles, "D" diamond."""
        s, r = self.s, size / 2 * self.s
        X, Y = x * s, y * s
        w = max(1, int(round(width * s)))
        if shape == "o":
            self.draw.ellipse([X - r, Y - r, X + r, Y + r], fill=fill, outline=edge, width=w)
        elif shape == "s":
            self.draw.rectangle([X - r, Y - r, X + r, Y + r], fill=fill, outline=edge, width=w)
        else:
            pts = {"^": [(X, Y - r), (X + r, Y + r * 0.8), (X - r, Y + r * 0.8)],
                   "v": [(X, Y + r), (X + r, Y - r * 0.8), (X - r, Y - r * 0.8)],
                   "D": [(X, Y - r), (X + r, Y), (X, Y + r), (X - r, Y)]}[shape]
            self.draw.polygon(pts, fill=fill, outline=edge, width=w)

    def png(self) -> bytes:
        img = self.img if self.s == 1 else self.img.reduce(self.s)  # box filter: fast, smooth at 2x
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=1)  # ~3x faster to encode than the default 6
        return buf.getvalue()

    def save(self, path: Path) -> None:
        write_bytes_atomic(Path(path), self.png(), sync=False)


def nice_ticks(lo: float, hi: float, n: int = 6) -> List[float]:
    """Round tick values within [lo, hi] (matplotlib's MaxNLocator)."""
    from matplotlib.ticker import MaxNLocator

    if not hi > lo:
        return [lo]
    slack = 1e-12 * max(abs(lo), abs(hi))
    return [float(t) for t in MaxNLocator(nbins=n).tick_values(lo, hi) if lo - slack <= t <= hi + slack]


class Plot:
    """One set of axes on a Canvas: a data box, ticks, grid, markers, lines, a legend.

    ``ylog``: log10 y axis (data must be > 0; callers clip). ``box``: (left, top, right,
    bottom) of the data area in pixels.
    """

    def __init__(self, canvas: Canvas, box: Tuple[float, float, float, float], xlim: Tuple[float, float],
                 ylim: Tuple[float, float], ylog: bool = False):
        self.c, self.box, self.xlim, self.ylog = canvas, box, xlim, ylog
        self.ylim = (math.log10(ylim[0]), math.log10(ylim[1])) if ylog else ylim

    def px(self, x: float, y: float) -> Tuple[float, float]:
        l, t, r, b = self.box
        x0, x1 = self.xlim
        y0, y1 = self.ylim
        yy = math.log10(y) if self.ylog else y
        return l + (x - x0) / (x1 - x0) * (r - l), b - (yy - y0) / (y1 - y0) * (b - t)

    def inside(self, y: float) -> bool:
        yy = math.log10(y) if self.ylog else y
        return self.ylim[0] - 1e-9 <= yy <= self.ylim[1] + 1e-9

    def frame(self, title: str = "", xlabel: str = "", ylabel: str = "") -> None:
        l, t, r, b = self.box
        self.c.rect(l, t, r, b, outline=BLACK, width=1)
        if title:
            self.c.text((l + r) / 2, t - 8, title, size=11, anchor="md")
        if xlabel:
            self.c.text((l + r) / 2, b + 24, xlabel, size=9, anchor="ma")
        if ylabel:
            self.c.text(14, (t + b) / 2, ylabel, size=9, anchor="mm", rotate=90)

    def yticks(self, grid: bool = True) -> None:
        l, t, r, b = self.box
        if self.ylog:
            ticks = [10.0 ** k for k in range(math.ceil(self.ylim[0] - 1e-9), math.floor(self.ylim[1] + 1e-9) + 1)]
            step = max(1, math.ceil(len(ticks) / 10))
            ticks = ticks[::step]
            labels = [f"1e{int(round(math.log10(v)))}" for v in ticks]
        else:
            ticks = nice_ticks(*self.ylim)
            labels = [format(v, ".3g") for v in ticks]
        for v, lab in zip(ticks, labels):
            _, y = self.px(self.xlim[0], v)
            if grid:
                self.c.line([(l, y), (r, y)], fill=(230, 230, 230), width=1)
            self.c.line([(l - 4, y), (l, y)], fill=BLACK, width=1)
            self.c.text(l - 6, y, lab, size=8, anchor="rm")

    def xticks(self, positions: Sequence[float], labels: Sequence[str], rotate: float = 0, grid: bool = False) -> None:
        l, t, r, b = self.box
        for x, lab in zip(positions, labels):
            X, _ = self.px(x, self.ylim[0] if not self.ylog else 10 ** self.ylim[0])
            if grid:
                self.c.line([(X, t), (X, b)], fill=(230, 230, 230), width=1)
            self.c.line([(X, b), (X, b + 4)], fill=BLACK, width=1)
            if rotate:
                self.c.text(X + 3, b + 6, lab, size=8, anchor="rt", rotate=rotate)
            else:
                self.c.text(X, b + 6, lab, size=8, anchor="ma")

    def hline(self, y: float, fill: RGB, dash: float = 0, width: float = 1.2) -> None:
        if not self.inside(y):
            return
        l, _, r, _ = self.box
        _, Y = self.px(self.xlim[0], y)
        self.c.line([(l, Y), (r, Y)], fill=fill, width=width, dash=dash)

    def polyline(self, xs: Sequence[float], ys: Sequence[float], fill: RGB, width: float = 1.5) -> None:
        """Connected line; breaks at non-finite points."""
        seg: List[Tuple[float, float]] = []
        for x, y in zip(xs, ys):
            if y is None or not math.isfinite(y) or (self.ylog and y <= 0):
                if len(seg) > 1:
                    self.c.line(seg, fill=fill, width=width)
                seg = []
                continue
            seg.append(self.px(x, y))
        if len(seg) > 1:
            self.c.line(seg, fill=fill, width=width)

    def markers(self, xs: Sequence[float], ys: Sequence[float], shape: str, fill: Optional[RGB], size: float = 6,
                edge: Optional[RGB] = None, width: float = 1.0) -> None:
        for x, y in zip(xs, ys):
            if y is None or not math.isfinite(y) or (self.ylog and y <= 0):
                continue
            X, Y = self.px(x, y)
            self.c.marker(X, Y, shape, fill, size, edge, width)

    def stairs(self, values: Sequence[float], edges: Sequence[float], fill: RGB, width: float = 1.6) -> None:
        pts: List[Tuple[float, float]] = []
        for v, e0, e1 in zip(values, edges[:-1], edges[1:]):
            pts += [self.px(e0, v), self.px(e1, v)]
        if pts:
            self.c.line(pts, fill=fill, width=width)

    def legend(self, entries: Sequence[Tuple[str, RGB, str]], x: float, y: float, boxed: bool = True) -> None:
        """Entries (label, colour, kind) with kind "line", "dash", a marker shape, or "hollow-s"."""
        f = font(int(round(8 * 1.25)))
        lh = 16
        width = max((f.getlength(line) for lab, _, _ in entries for line in lab.split("\n")), default=0) + 34
        height = sum(lh * (lab.count("\n") + 1) for lab, _, _ in entries) + 8
        if boxed:
            self.c.rect(x, y, x + width, y + height, outline=GREY, fill=(255, 255, 255))
        yy = y + 4
        for lab, col, kind in entries:
            cy = yy + lh / 2
            if kind in ("line", "dash"):
                self.c.line([(x + 6, cy), (x + 26, cy)], fill=col, width=1.6, dash=4 if kind == "dash" else 0)
            elif kind.startswith("hollow-"):
                self.c.marker(x + 16, cy, kind[-1], None, 9, edge=col, width=2)
            else:
                self.c.marker(x + 16, cy, kind, col, 6)
            self.c.text(x + 32, cy, lab, size=8, anchor="lm")
            yy += lh * (lab.count("\n") + 1)
