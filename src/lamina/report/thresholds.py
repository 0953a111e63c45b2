"""Limits a CI sets on a family (``--max-size``, ``--max-layers``, ``--max-wasted``): each image over one
is a :class:`Breach` with a sentence that says which image, by how much, and what to look at."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lamina.errors import LaminaError
from lamina.report.family import FamilyReport, ImageReport
from lamina.report.units import human, parse_size

#: The exit status of `lamina report` when a threshold is exceeded (lamina.errors.EXIT_CODES).
EXIT_THRESHOLD = 6


@dataclass(frozen=True)
class Thresholds:
    """``max_size``: unpacked bytes of an image (what `docker images` shows); ``max_layers``: layers;
    ``max_wasted``: bytes hidden by later layers, or a percentage of the image's unpacked bytes."""

    max_size: int | None = None
    max_layers: int | None = None
    max_wasted: int | None = None
    max_wasted_percent: float | None = None

    @classmethod
    def parse(cls, max_size: str | None = None, max_layers: int | None = None, max_wasted: str | None = None) -> Thresholds:
        percent = None
        wasted = None
        if max_wasted is not None:
            if max_wasted.strip().endswith("%"):
                try:
                    percent = float(max_wasted.strip()[:-1])
                except ValueError:
                    raise LaminaError(f"bad --max-wasted {max_wasted!r}", hint="a size (50MB) or a percentage (5%)") from None
            else:
                wasted = parse_size(max_wasted)
        return cls(parse_size(max_size) if max_size else None, max_layers, wasted, percent)

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.max_size, self.max_layers, self.max_wasted, self.max_wasted_percent))


@dataclass(frozen=True)
class Breach:
    image: str
    limit: str
    value: str
    allowed: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"image": self.image, "limit": self.limit, "value": self.value, "allowed": self.allowed,
                "message": self.message}


def check(report: FamilyReport, limits: Thresholds) -> list[Breach]:
    return [b for image in report.images for b in _check_image(image, limits)]


def _check_image(image: ImageReport, limits: Thresholds) -> Sequence[Breach]:
    out = []
    if limits.max_size is not None and image.unpacked > limits.max_size:
        biggest = max(image.layers, key=lambda x: x.bytes).description if image.layers else ""
        out.append(Breach(image.name, "max-size", human(image.unpacked), human(limits.max_size),
                          f"{image.name} is {human(image.unpacked)} unpacked, over --max-size {human(limits.max_size)}"
                          f" (its largest layer: {biggest})"))
    if limits.max_layers is not None and len(image.layers) > limits.max_layers:
        out.append(Breach(image.name, "max-layers", str(len(image.layers)), str(limits.max_layers),
                          f"{image.name} has {len(image.layers)} layers, over --max-layers {limits.max_layers} "
                          f"({image.base_layers} from its base)"))
    if limits.max_wasted is not None and image.wasted > limits.max_wasted:
        out.append(Breach(image.name, "max-wasted", human(image.wasted), human(limits.max_wasted), _wasted(image, human(limits.max_wasted))))
    percent = 100 * image.wasted / image.unpacked if image.unpacked else 0.0
    if limits.max_wasted_percent is not None and percent > limits.max_wasted_percent:
        out.append(Breach(image.name, "max-wasted", f"{percent:.1f}%", f"{limits.max_wasted_percent:g}%",
                          _wasted(image, f"{limits.max_wasted_percent:g}%")))
    return out


def _wasted(image: ImageReport, allowed: str) -> str:
    worst = max(image.hidden, key=lambda h: h.size)
    return (f"{image.name} wastes {human(image.wasted)} in {len(image.hidden)} files hidden by later layers, over "
            f"--max-wasted {allowed} (largest: /{worst.path}, {human(worst.size)}, in layer {worst.layer + 1})")
