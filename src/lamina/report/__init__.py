"""Layer analysis: what is in every image of a family, what the images share, what a change costs.

Data flows one way: :mod:`source` (layout, store, registry) → :mod:`scan` (each layer streamed once,
cached) → :mod:`owners` (which package owns which path) → :mod:`family` (the analysis) and
:mod:`diff` (two states) → renderers: :mod:`text` (terminal), :mod:`jsonout` (stable JSON schema),
:mod:`htmlout` (one self-contained page with :mod:`treemap` SVGs). :mod:`thresholds` turns CI limits
into failures. docs/report.md says what every number means.
"""

from lamina.report.diff import FamilyDiff, diff_families, diff_images
from lamina.report.family import FamilyReport, ImageReport, LayerReport, analyze
from lamina.report.source import SourceImage, layout_images, registry_image, store_images

__all__ = ["FamilyDiff", "FamilyReport", "ImageReport", "LayerReport", "SourceImage", "analyze", "diff_families",
           "diff_images", "layout_images", "registry_image", "store_images"]
