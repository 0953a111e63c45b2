"""lamina: build the container images of a Python monorepo as one layered family, without a daemon."""

__version__ = "0.1.0"

import sys as _sys

# httpx imports its own command line (click, pygments, rich: ~50 ms of every start) whenever those happen
# to be installed; lamina never calls it. A None in sys.modules makes that optional import fail fast.
if "httpx" not in _sys.modules:
    _sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]
