"""Supply-chain metadata for built images: SBOMs, cosign-compatible signatures, SLSA provenance, checks.

Everything here is derived from what lamina recorded while building (:mod:`lamina.inventory`), never
guessed from an image's files. ``lamina.oci`` carries the generic parts (artifacts that refer to an
image); this package knows what the artifacts mean.
"""
