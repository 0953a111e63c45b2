"""lamina: build the container images of a Python monorepo as one layered family, without a daemon."""

__version__ = "0.1.0"
