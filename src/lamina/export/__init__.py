"""``lamina export``: the seed's own build files — Dockerfiles, docker-bake.json, build scripts — generated
from ``lamina.toml`` and ``lamina.lock``, for teams that build (also) with Docker BuildKit or buildah.

One Dockerfile per image of the project, following the seed's patterns (``infra/docker/NAME.Dockerfile``,
build args ``REGISTRY``/``OWNER``/``BASE_VERSION``, bases first), pinned to the lock: Debian packages as
``name=version``, Python distributions as lock-derived requirement files installed with
``pip install --require-hashes --no-deps``. The output is a pure function of the config and the lock
(same inputs, same bytes), so ``--check`` can tell CI when the committed files are stale.

:func:`collect` reads what the files need (the lock, and each image's config as lamina would build it,
from a lock-only pass of the family); :func:`render` turns that into ``{relative path: bytes}``;
:func:`write` and :func:`stale` compare it with the output folder.

The package, by concern: :mod:`~lamina.export.model` (the inputs, the file names), :mod:`~lamina.export.common`
(rendering shared by all files), :mod:`~lamina.export.dockerfiles`, :mod:`~lamina.export.scripts`,
:mod:`~lamina.export.bake`, :mod:`~lamina.export.render` (all files of a kind) and :mod:`~lamina.export.files`
(writing, and the check for stale files).
"""

from __future__ import annotations

from lamina.export.bake import bake
from lamina.export.common import dockerignore
from lamina.export.dockerfiles import dockerfile, requirements
from lamina.export.files import Result, stale, write
from lamina.export.model import (
    BAKE_FILE,
    BASE_SCRIPT,
    DEFAULT_OUT,
    KINDS,
    MARK,
    REQUIREMENTS_DIR,
    SERVICE_SCRIPT,
    Export,
    ExportImage,
    Kind,
    collect,
    out_folder,
)
from lamina.export.render import owned, readme, render
from lamina.export.scripts import script

__all__ = [
    "BAKE_FILE", "BASE_SCRIPT", "DEFAULT_OUT", "KINDS", "MARK", "REQUIREMENTS_DIR", "SERVICE_SCRIPT", "Export",
    "ExportImage", "Kind", "Result", "bake", "collect", "dockerfile", "dockerignore", "out_folder", "owned",
    "readme", "render", "requirements", "script", "stale", "write",
]
