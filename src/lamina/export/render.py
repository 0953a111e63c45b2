"""All the files of an export kind, as ``{relative path: bytes}``, and which files a kind owns."""

from __future__ import annotations

from lamina.export.bake import bake
from lamina.export.common import bases_and_services, check_exportable, dockerignore, locked_dists
from lamina.export.dockerfiles import dockerfile, requirements
from lamina.export.model import BAKE_FILE, BASE_SCRIPT, MARK, REQUIREMENTS_DIR, SERVICE_SCRIPT, Export, Kind
from lamina.export.scripts import script


def render(export: Export, kind: Kind) -> dict[str, bytes]:
    """``{path relative to the output folder: content}`` for ``kind`` (deterministic)."""
    files: dict[str, str] = {}
    if kind in ("dockerfiles", "all"):
        ignore = dockerignore(export)
        for name, image in export.images.items():
            check_exportable(export, image)
            files[f"{name}.Dockerfile"] = dockerfile(export, image)
            files[f"{name}.Dockerfile.dockerignore"] = ignore
            if locked_dists(image):
                files[f"{REQUIREMENTS_DIR}/{name}.txt"] = requirements(export, image)
        files[BASE_SCRIPT] = script(export, services=False)
        files[SERVICE_SCRIPT] = script(export, services=True)
    if kind in ("bake", "all"):
        for image in export.images.values():
            check_exportable(export, image)
        files[BAKE_FILE] = bake(export)
    files[".dockerignore"] = dockerignore(export)
    files["README.md"] = readme(export)
    return {path: files[path].encode("utf-8") for path in sorted(files)}


def owned(path: str, kind: Kind) -> bool:
    """Is ``path`` (relative to the output folder) a file that ``kind`` writes?"""
    if path in (".dockerignore", "README.md"):
        return True
    if path == BAKE_FILE:
        return kind in ("bake", "all")
    if kind == "bake":
        return False
    return (path.endswith((".Dockerfile", ".Dockerfile.dockerignore")) and "/" not in path
            or path.startswith(f"{REQUIREMENTS_DIR}/") and path.endswith(".txt") and path.count("/") == 1
            or path in (BASE_SCRIPT, SERVICE_SCRIPT))


def readme(export: Export) -> str:
    config = export.config
    bases, services = bases_and_services(export)
    out = export.out
    owner = f" {config.owner}" if config.owner else ""
    return f"""<!-- {MARK} from lamina.toml: do not edit; regenerate with `lamina export all`. -->
# Build files for Docker BuildKit and buildah

lamina generated these files from `lamina.toml` and `lamina.lock`, so the same description builds the
images with lamina (`lamina build`) or with BuildKit/buildah. Do not edit them: change `lamina.toml`
(or re-lock with `lamina lock`), then run `lamina export all` (`lamina export dockerfiles` /
`lamina export bake`). `lamina export all --check` fails, naming the stale files, when they differ
from what lamina would write (for CI).

Bases: {', '.join(bases) or 'none'}. Services: {', '.join(services) or 'none'}.

Every command runs from the project (the build context):

```sh
# the whole family with BuildKit, bases first (each base is a named context of the images on it)
docker buildx bake -f {out}/{BAKE_FILE}            # REGISTRY=… OWNER=… BASE_VERSION=… VERSION=… override
docker buildx bake -f {out}/{BAKE_FILE} --push

# the seed's scripts: bases once (in dependency order), then every service; build and push
{out}/{BASE_SCRIPT} {config.registry} {config.base_version or config.version or 'latest'}{owner}
{out}/{SERVICE_SCRIPT} {config.registry} {config.version or 'latest'}{owner}

# one service, on its published base
docker build -f {out}/{(services or bases or ['IMAGE'])[0]}.Dockerfile --build-arg REGISTRY={config.registry} .

# without a daemon: buildah (or podman)
DOCKER=buildah BUILD_FLAGS="--layers" {out}/{BASE_SCRIPT}
buildah bud --layers --format docker --ignorefile {out}/NAME.Dockerfile.dockerignore -f {out}/NAME.Dockerfile .
```

Python packages are installed from `{REQUIREMENTS_DIR}/NAME.txt` (what each image adds, from the lock,
with hashes), copied into the image first as the seed's Dockerfiles do: a changed file then changes the
step cache key with every builder (buildah ignores the content of bind mounts in its cache).
See lamina's docs/export.md for how these images differ
from the ones lamina builds.
"""
