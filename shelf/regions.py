"""Regions of a photo to classify. This slice knows `whole` (the photo is one product crop)."""
from __future__ import annotations

from dataclasses import dataclass

REGION_MODES = ("whole",)


@dataclass(frozen=True)
class Box:
    """Pixel box, x2/y2 exclusive, in the EXIF-rotated image's coordinates."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x1, self.y1, self.x2, self.y2)


def whole_image(width: int, height: int) -> list[Box]:
    return [Box(0, 0, width, height)]


def regions_for(mode: str, width: int, height: int) -> list[Box]:
    if mode == "whole":
        return whole_image(width, height)
    raise ValueError(f"unknown region mode {mode!r}; choose one of: {', '.join(REGION_MODES)}")
