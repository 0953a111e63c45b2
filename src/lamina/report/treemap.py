"""Squarified treemaps (Bruls, Huizing, van Wijk 2000): rectangles whose areas are proportional to
values and whose sides stay close to square, laid out in rows along the shorter side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float

    @property
    def area(self) -> float:
        return self.w * self.h


def squarify(values: Sequence[float], box: Rect) -> list[Rect]:
    """One rectangle per value (in the order given; sort descending for the best aspect ratios).
    Zero and negative values get empty rectangles."""
    total = sum(v for v in values if v > 0)
    if total <= 0 or box.area <= 0:
        return [Rect(box.x, box.y, 0, 0) for _ in values]
    scale = box.area / total
    areas = [(i, v * scale) for i, v in enumerate(values) if v > 0]
    out: dict[int, Rect] = {}
    remaining = box
    row: list[tuple[int, float]] = []
    for item in areas:
        side = min(remaining.w, remaining.h)
        if not row or _worst(row + [item], side) <= _worst(row, side):
            row.append(item)
            continue
        remaining = _lay_row(row, remaining, out)
        row = [item]
    if row:
        _lay_row(row, remaining, out)
    return [out.get(i, Rect(box.x, box.y, 0, 0)) for i in range(len(values))]


def _worst(row: Sequence[tuple[int, float]], side: float) -> float:
    s = sum(a for _, a in row)
    if s <= 0 or side <= 0:
        return float("inf")
    biggest, smallest = max(a for _, a in row), min(a for _, a in row)
    return max(side * side * biggest / (s * s), (s * s) / (side * side * smallest))


def _lay_row(row: Sequence[tuple[int, float]], box: Rect, out: dict[int, Rect]) -> Rect:
    """Place ``row`` along the shorter side of ``box``; returns what is left of it."""
    s = sum(a for _, a in row)
    if box.w >= box.h:  # a column at the left
        width = s / box.h if box.h else 0
        y = box.y
        for i, a in row:
            h = a / width if width else 0
            out[i] = Rect(box.x, y, width, h)
            y += h
        return Rect(box.x + width, box.y, max(box.w - width, 0), box.h)
    height = s / box.w if box.w else 0
    x = box.x
    for i, a in row:
        w = a / height if height else 0
        out[i] = Rect(x, box.y, w, height)
        x += w
    return Rect(box.x, box.y + height, box.w, max(box.h - height, 0))
