"""The Python step: an image's distributions resolved with uv, installed into its venv, one layer
per distribution or group; and, for a service, the command that serves its ASGI app."""

from __future__ import annotations

from lamina.config import ImageSpec
from lamina.errors import ConfigError
from lamina.python.asgi import find_asgi_app
from lamina.python.image import LOCK_KIND, PythonSession, PythonState
from lamina.steps import StepContext, StepLayer, StepResult


class PythonStep:
    """Lock or resolve the image's requirements against its base's pins, then describe their layers."""

    kind = LOCK_KIND

    def __init__(self, session: PythonSession) -> None:
        self.session = session

    def applies(self, spec: ImageSpec) -> bool:
        return spec.uses_python or spec.service is not None

    def run(self, ctx: StepContext) -> StepResult:
        spec = ctx.spec
        result = StepResult(self.kind, cmd=service_command(spec))
        if not spec.uses_python:
            return result
        prior = ctx.states.get(self.kind)
        prepared = self.session.prepare(
            spec, ctx.platform, ctx.base_image, prior if isinstance(prior, PythonState) else None,
            ctx.lock_section(self.kind), own_env=ctx.env, debian_python=has_os_python(ctx.os_packages),
            media_type=ctx.media_type, mtime=ctx.mtime, fetch=ctx.fetch,
        )
        result.state, result.lock, result.resolved = prepared.state, prepared.section, prepared.resolved
        result.env = prepared.env
        result.layers = [StepLayer(layer, components) for layer, components in prepared.layers]
        result.added, result.downloaded = len(prepared.added), prepared.downloaded
        return result

    def close(self) -> None:
        self.session.close()


def has_os_python(os_packages: dict[str, str]) -> bool:
    """Whether the OS has a ``python3.X`` interpreter package (Debian's)."""
    return any(name.startswith("python3.") and name[8:].isdigit() for name in os_packages)


def service_command(spec: ImageSpec) -> list[str] | None:
    """A service's command when its config sets none: uvicorn on the ASGI app found in its code."""
    service = spec.service
    if service is None or spec.run.cmd is not None or spec.run.entrypoint is not None:
        return None
    app = find_asgi_app(service.folder, service.root)
    if app is None:
        raise ConfigError(f"{service.table}: no ASGI app (such as `app = FastAPI()`) found in {service.folder}",
                          hint=f"set command = [...] in [{service.table}] of lamina.toml")
    return ["python", "-m", "uvicorn", app, "--host", "0.0.0.0", "--port", str(service.port)]
