"""One Dockerfile per image, in the order lamina makes its layers, and its lock-derived requirements file."""

from __future__ import annotations

import json
import re

from lamina.config import ImageSpec
from lamina.errors import ConfigError
from lamina.export.common import as_json, build_args, header, locked_dists, ref_expr
from lamina.export.model import (
    DEFAULT_PATH,
    MARK,
    MOUNTED_REQUIREMENTS,
    PIP_FLAGS,
    REQUIREMENTS_DIR,
    Export,
    ExportImage,
)
from lamina.oci.model import HealthCheck


def _apt_packages(export: Export, image: ExportImage) -> list[str]:
    """``name=version`` of what the image asks for (its `packages`), pinned to the lock."""
    spec = image.spec
    locked = {p["name"]: p for p in (image.debian or {}).get("packages", [])}
    provides: dict[str, str] = {}
    for p in locked.values():
        for item in str(p.get("provides", "")).split(","):
            if item.strip():
                provides.setdefault(item.strip().split()[0], p["name"])
    names = [re.split(r"[\s(]", n.strip(), maxsplit=1)[0] for n in spec.packages]
    if spec.base.startswith("debian:"):
        names.append("netbase")  # lamina adds it to every debian: image (/etc/services, /etc/protocols)
    if _needs_venv_package(export, image):
        names.append("python3-venv")
    pinned = []
    for name in sorted(set(names)):
        record = locked.get(name) or locked.get(provides.get(name, ""))
        if name == "python3-venv" and record is None and "python3" in locked:
            record = {"name": name, "version": locked["python3"]["version"]}  # same source (python3-defaults)
        pinned.append(f"{record['name']}={record['version']}" if record else name)
    return pinned


def _needs_venv_package(export: Export, image: ExportImage) -> bool:
    """Does the Dockerfile route need python3-venv here (Debian's python3 has no venv/ensurepip without it)?
    Yes on a debian: image whose Python is Debian's, when an image built on it makes the venv."""
    if not image.spec.base.startswith("debian:") or not _debian_python(image):
        return False
    return any(_makes_venv(other) and _debian_root(export, other) is image for other in export.images.values())


def _debian_python(image: ExportImage) -> bool:
    return any(re.fullmatch(r"python3(\.\d+)?", p["name"]) for p in (image.debian or {}).get("packages", []))


def _debian_root(export: Export, image: ExportImage) -> ExportImage | None:
    """The debian: image at the bottom of ``image``'s chain of project images, if it has Debian's Python."""
    current: ExportImage | None = image
    while current is not None:
        if current.spec.base.startswith("debian:"):
            return current if _debian_python(current) else None
        current = export.images.get(current.base) if current.base else None
    return None


def _makes_venv(image: ExportImage) -> bool:
    venv = image.python.get("venv") if image.python else None
    return bool(locked_dists(image)) and image.base_env.get("VIRTUAL_ENV") != venv


def _quote_env(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:@%+,=-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def _env_lines(image: ExportImage) -> list[str]:
    """ENV for what lamina's config of the image adds to or changes in its base's env."""
    pairs = []
    for key, value in image.env.items():
        if image.base_env.get(key) == value:
            continue
        base_path = image.base_env.get("PATH") or (DEFAULT_PATH if image.base else None)
        if key == "PATH" and base_path and value.endswith(":" + base_path) and value != base_path:
            pairs.append(f"PATH={value[: -len(base_path)]}$PATH")  # the seed's ENV PATH="/opt/venv/bin:$PATH"
        else:
            pairs.append(f"{key}={_quote_env(value)}")
    if not pairs:
        return []
    return ["ENV " + " \\\n    ".join(pairs)]


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def _healthcheck(check: HealthCheck) -> str:
    test = list(check.test)
    if not test or test[0] == "NONE":
        return "HEALTHCHECK NONE"
    flags = (f"--interval={_duration(check.interval_s)} --timeout={_duration(check.timeout_s)} "
             f"--start-period={_duration(check.start_period_s)} --retries={check.retries}")
    if test[0] == "CMD-SHELL":
        return f"HEALTHCHECK {flags} \\\n    CMD {' '.join(test[1:])}"
    return f"HEALTHCHECK {flags} \\\n    CMD {as_json(test[1:] if test[0] == 'CMD' else test)}"


def _label(key: str, value: str) -> str:
    return f"{json.dumps(key)}={json.dumps(value, ensure_ascii=False)}" if not re.fullmatch(r"[a-z0-9.-]+", key) \
        else f"{key}={json.dumps(value, ensure_ascii=False)}"


def dockerfile(export: Export, image: ExportImage) -> str:
    """The image's Dockerfile, in the order lamina makes its layers: packages, Python, code."""
    config, spec = export.config, image.spec
    kind = "service" if spec.service else "base"
    lines = ["# syntax=docker/dockerfile:1", *header("#", f"the {kind} image {spec.name!r}")]
    # FROM ----------------------------------------------------------------------------------------
    base = export.images.get(image.base) if image.base else None
    if base is not None:
        lines += [f"ARG {k}={v}" for k, v in build_args(export)]
        lines += [f"# docker-bake.json sets BASE_IMAGE to its {base.spec.name!r} target; a plain build uses the published image",
                  f"ARG BASE_IMAGE={ref_expr(export, base.spec)}", "FROM ${BASE_IMAGE}"]
    elif spec.base.startswith("debian:"):
        lines.append(f"FROM debian:{spec.base.split(':', 1)[1]}-slim")
    else:
        lines.append(f"FROM {spec.base}")
    version = _labels(export, spec).get("org.opencontainers.image.version", "")
    if "${BASE_VERSION}" in version:  # for the label (build args declared before FROM are not seen after it)
        lines.append(f"ARG BASE_VERSION={dict(build_args(export))['BASE_VERSION']}")
    if "${VERSION}" in version:
        lines.append(f"ARG VERSION={config.version or 'latest'}")
    # what runs as root ---------------------------------------------------------------------------
    dists = locked_dists(image)
    apt = _apt_packages(export, image) if spec.packages or spec.base.startswith("debian:") else []
    runs = bool(apt or dists or spec.symlinks or spec.base.startswith("debian:"))
    inherited = image.base_user  # from the base's config, whether a project image or a pulled one
    switched = runs and inherited not in (None, "", "root", "0", "0:0")
    if switched:
        lines.append("USER root")
    if spec.run.workdir:
        lines.append(f"WORKDIR {spec.run.workdir}")
    lines += _env_lines(image)
    if apt:
        lines.append("RUN apt-get update \\\n && apt-get install -y --no-install-recommends \\\n"
                     + "".join(f"      {p} \\\n" for p in apt)
                     + " && rm -rf /var/lib/apt/lists/*")
    if spec.base.startswith("debian:"):
        user = _app_user(spec)
        lines.append(f"RUN groupadd --gid 1000 {user} \\\n"
                     f" && useradd --uid 1000 --gid 1000 --home-dir /home/{user} --create-home --shell /usr/sbin/nologin {user}")
    if dists:
        # COPY, not RUN --mount: buildah's step cache does not look at a bind mount's content, so a changed
        # lock would reuse the old install; a COPY'd file is part of the cache key everywhere (as in the seed)
        lines.append(f"COPY {export.out}/{REQUIREMENTS_DIR}/{spec.name}.txt {MOUNTED_REQUIREMENTS}")
        venv = str(image.python.get("venv", "/opt/venv"))  # type: ignore[union-attr]
        if not _makes_venv(image):
            lines.append(f"RUN pip install {PIP_FLAGS} -r {MOUNTED_REQUIREMENTS}")
        elif _debian_root(export, image) is not None:
            # Debian's pip wheel (python3-pip-whl, with python3-venv) runs pip once; it installs the locked pip
            lines.append(f"RUN python3 -m venv --without-pip {venv} \\\n"
                         " && set -- /usr/share/python-wheels/pip-*.whl \\\n"
                         f" && {venv}/bin/python \"$1/pip\" install {PIP_FLAGS} -r {MOUNTED_REQUIREMENTS}")
        else:
            # another Python base (e.g. python:3.12-slim): its venv module brings a pip, which installs the locked one
            lines.append(f"RUN python3 -m venv {venv} \\\n"
                         f" && {venv}/bin/python -m pip install {PIP_FLAGS} -r {MOUNTED_REQUIREMENTS}")
    for copy in spec.copies:
        lines.append(_copy(export, spec, copy))
    for link, target in sorted(spec.symlinks.items()):
        lines.append(f"RUN ln -sfn {target} {link}")
    # how it runs ---------------------------------------------------------------------------------
    if image.user and (switched or image.user != inherited):
        lines.append(f"USER {image.user}")
    elif switched and inherited:
        lines.append(f"USER {inherited}")
    for port in spec.run.exposed_ports:
        lines.append(f"EXPOSE {port.removesuffix('/tcp')}")
    if spec.run.healthcheck is not None:
        lines.append(_healthcheck(spec.run.healthcheck))
    lines.append("LABEL " + " \\\n      ".join(_label(k, v) for k, v in _labels(export, spec).items()))
    if spec.run.entrypoint is not None:
        lines.append(f"ENTRYPOINT {as_json(spec.run.entrypoint)}")
    if spec.run.cmd is not None:
        lines.append(f"CMD {as_json(spec.run.cmd)}")
    return "\n".join(lines) + "\n"


def _labels(export: Export, spec: ImageSpec) -> dict[str, str]:
    config = export.config
    labels = {"org.opencontainers.image.title": spec.name}
    if spec.tags:
        labels["org.opencontainers.image.version"] = spec.tags[0]
    elif spec.service is not None:
        labels["org.opencontainers.image.version"] = "${VERSION}"
    elif spec.base_version:
        labels["org.opencontainers.image.version"] = spec.base_version
    elif config.base_version:
        labels["org.opencontainers.image.version"] = "${BASE_VERSION}"
    if config.source:
        labels["org.opencontainers.image.source"] = config.source
    if config.revision:
        labels["org.opencontainers.image.revision"] = config.revision
    labels.update(spec.run.labels)
    return labels


def _app_user(spec: ImageSpec) -> str:
    """The app user's name as lamina's Debian base names it: ``user`` when it is a name, else ``app``."""
    name = (spec.run.user or "").split(":", 1)[0]
    if name and not name.isdigit() and name not in ("root", "nobody") and re.fullmatch(r"[a-z_][a-z0-9_-]*", name):
        return name
    return "app"


def _copy(export: Export, spec: ImageSpec, copy) -> str:  # noqa: ANN001
    root = export.config.root
    try:
        src = copy.src.absolute().relative_to(root.absolute()).as_posix()
    except ValueError:
        raise ConfigError(f"image {spec.name!r} copies {copy.src}, which is outside the project (the build context)",
                          hint="copy files from inside the project") from None
    is_dir = copy.src.is_dir()
    dest = copy.dest
    workdir = (spec.run.workdir or "").rstrip("/")
    if workdir and dest.startswith(workdir + "/"):
        dest = "./" + dest[len(workdir) + 1:]
    if is_dir:
        src, dest = (src or ".").rstrip("/") + "/", dest.rstrip("/") + "/"
    flags = []
    if copy.uid or copy.gid:
        flags.append(f"--chown={copy.uid}:{copy.gid}")
    if copy.mode is not None:
        flags.append(f"--chmod={copy.mode:04o}")
    return "COPY " + "".join(f"{f} " for f in flags) + f"{src} {dest}"


def requirements(export: Export, image: ExportImage) -> str:
    """What the image adds on top of its base, per the lock: one hash-pinned line per distribution."""
    spec = image.spec
    on = f" on top of {image.base!r}" if image.base else ""
    lines = [f"# {MARK} from lamina.lock: the Python distributions image {spec.name!r} adds{on}.",
             f"# Installed by `pip install {PIP_FLAGS} -r` this file: exactly these wheels, nothing resolved at build time.",
             "# Regenerate with `lamina export dockerfiles` (after `lamina lock`)."]
    python = export.config.python
    if python.index_url:
        lines.append(f"--index-url {python.index_url}")
    lines += [f"--extra-index-url {url}" for url in python.extra_index_urls]
    local = [d["name"] for d in locked_dists(image) if str(d.get("url", "")).startswith("file:")]
    if local:
        lines.append(f"# from a local folder (lamina.toml [python] find_links), pass it to pip yourself: {', '.join(local)}")
    for dist in sorted(locked_dists(image), key=lambda d: d["name"]):
        lines.append(f"{dist['name']}=={dist['version']} \\\n    --hash=sha256:{dist['sha256']}")
    return "\n".join(lines) + "\n"
