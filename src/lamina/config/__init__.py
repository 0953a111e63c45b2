"""``lamina.toml``: the project's images, read and checked into typed specs.

:mod:`lamina.config.model` holds the specs, :mod:`lamina.config.reader` reads the file (every problem
reported with the file, the line, the key, what was expected and what was found), and
:mod:`lamina.config.services` turns ``[services]`` into one image per service folder. Registry, owner
and version can be overridden by environment (``LAMINA_REGISTRY``, ``LAMINA_OWNER``, ``LAMINA_VERSION``,
``LAMINA_BASE_VERSION``) and by command-line flags, in that order of strength (flags win).
"""

from lamina.config.model import (
    CODE_EXCLUDES,
    CONFIG_NAME,
    DEFAULT_OUTPUT,
    ENV_OVERRIDES,
    OUTPUT_FOLDERS,
    TEST_FOLDERS,
    CopySpec,
    DependencySource,
    ImageSpec,
    ProjectConfig,
    PythonSettings,
    ServiceCode,
    service_name,
)
from lamina.config.reader import find_config, load_config

__all__ = [
    "CODE_EXCLUDES",
    "CONFIG_NAME",
    "DEFAULT_OUTPUT",
    "ENV_OVERRIDES",
    "OUTPUT_FOLDERS",
    "TEST_FOLDERS",
    "CopySpec",
    "DependencySource",
    "ImageSpec",
    "ProjectConfig",
    "PythonSettings",
    "ServiceCode",
    "find_config",
    "load_config",
    "service_name",
]
