"""The seed's build scripts: the bases (once, in dependency order), then the services; built and pushed."""

from __future__ import annotations

from lamina.export.common import bases_and_services, header, ref_expr
from lamina.export.model import BASE_SCRIPT, SERVICE_SCRIPT, Export


def script(export: Export, *, services: bool) -> str:
    """The seed's build scripts: bases (once, in dependency order) or services, built and pushed."""
    config = export.config
    bases, service_names = bases_and_services(export)
    names = service_names if services else bases
    depth = export.out.count("/") + 1
    up = "/".join([".."] * depth)
    version = config.version or "latest"
    base_version = config.base_version or version
    usage = (f"{SERVICE_SCRIPT} [REGISTRY] [VERSION] [OWNER] [BASE_VERSION]" if services
             else f"{BASE_SCRIPT} [REGISTRY] [BASE_VERSION] [OWNER]")
    what = ("every service, on bases published by " + BASE_SCRIPT) if services else "the base images, in dependency order"
    lines = [
        "#!/bin/sh",
        *header("#", f"builds {what}"),
        f"# usage: {usage}",
        "#   defaults from lamina.toml [project]; DOCKER=buildah (or podman) builds without a daemon;",
        "#   IMAGES=\"a b\" builds only those; PUSH=0 does not push; BUILD_FLAGS / PUSH_FLAGS add flags.",
        "set -eu",
        f"REGISTRY=\"${{1:-{config.registry}}}\"",
    ]
    if services:
        lines += [f"VERSION=\"${{2:-{version}}}\"", f"OWNER=\"${{3:-{config.owner or ''}}}\"",
                  f"BASE_VERSION=\"${{4:-${{BASE_VERSION:-{base_version}}}}}\""]
    else:
        lines += [f"BASE_VERSION=\"${{2:-{base_version}}}\"", f"OWNER=\"${{3:-{config.owner or ''}}}\""]
    build_args = "--build-arg REGISTRY=\"$REGISTRY\"" + (" --build-arg OWNER=\"$OWNER\"" if config.owner else "")
    build_args += " \\\n    --build-arg BASE_VERSION=\"$BASE_VERSION\"" + (" --build-arg VERSION=\"$VERSION\"" if services else "")
    lines += [
        "DOCKER=\"${DOCKER:-docker}\"",
        "BUILD_FLAGS=\"${BUILD_FLAGS:-}\"",
        "PUSH_FLAGS=\"${PUSH_FLAGS:-}\"",
        f"cd \"$(dirname \"$0\")/{up}\"  # the project: the build context",
        "# buildah/podman: keep HEALTHCHECK (docker format) and read the Dockerfile's own ignore file",
        "case \"$DOCKER\" in *buildah*|*podman*) DAEMONLESS=1 ;; *) DAEMONLESS= ;; esac",
        "",
        "wanted() {",
        "  [ -z \"${IMAGES:-}\" ] && return 0",
        "  case \" $IMAGES \" in *\" $1 \"*) return 0 ;; *) return 1 ;; esac",
        "}",
        "",
        "build() {  # NAME TAG",
        "  wanted \"$1\" || return 0",
        "  echo \"==> $2\" >&2",
        "  # shellcheck disable=SC2086",
        f"  $DOCKER build $BUILD_FLAGS ${{DAEMONLESS:+--format docker --ignorefile {export.out}/$1.Dockerfile.dockerignore}} \\",
        f"    {build_args} \\",
        f"    -f \"{export.out}/$1.Dockerfile\" -t \"$2\" .",
        "  if [ \"${PUSH:-1}\" != 0 ]; then",
        "    # shellcheck disable=SC2086",
        "    $DOCKER push $PUSH_FLAGS \"$2\"",
        "  fi",
        "}",
        "",
    ]
    for name in names:
        spec = export.images[name].spec
        lines.append(f"build {name} \"{ref_expr(export, spec)}\"")
    if not names:
        lines.append("echo \"nothing to build\" >&2")
    return "\n".join(lines) + "\n"
