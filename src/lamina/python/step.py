"""The Python step: an image's distributions resolved with uv, installed into its venv, one layer
per distribution or group; and, for a service, what it runs and the health check its kind calls for."""

from __future__ import annotations

from lamina.config import ImageSpec
from lamina.config.services import HEALTH_LABEL, describe_health, health_check
from lamina.errors import ConfigError
from lamina.oci.model import HealthCheck
from lamina.python.entry import ServiceEntry, find_entry
from lamina.python.image import LOCK_KIND, PythonSession, PythonState
from lamina.steps import StepContext, StepLayer, StepResult


#: Commands that serve HTTP: a service whose command runs one is checked on /healthz unless it says otherwise.
HTTP_SERVERS = {"uvicorn", "gunicorn", "hypercorn", "granian", "daphne", "waitress-serve", "flask", "fastapi"}


class PythonStep:
    """Lock or resolve the image's requirements against its base's pins, then describe their layers."""

    kind = LOCK_KIND

    def __init__(self, session: PythonSession) -> None:
        self.session = session

    def applies(self, spec: ImageSpec) -> bool:
        return spec.uses_python or spec.service is not None

    def run(self, ctx: StepContext) -> StepResult:
        spec = ctx.spec
        entry = service_entry(spec)
        health, check = service_health(spec, entry)
        result = StepResult(self.kind, cmd=service_command(spec), healthcheck=check)
        if health is not None and spec.service is not None:
            result.labels = {HEALTH_LABEL: describe_health(health, spec.service.port)}
        if not spec.uses_python and spec.service is None:
            return result
        prior = ctx.states.get(self.kind)
        prepared = self.session.prepare(
            spec, ctx.platform, ctx.base_image, prior if isinstance(prior, PythonState) else None,
            ctx.lock_section(self.kind), own_env=ctx.env, debian_python=has_os_python(ctx.os_packages),
            media_type=ctx.media_type, mtime=ctx.mtime, fetch=ctx.fetch, download=ctx.download,
        )
        result.state, result.lock, result.resolved = prepared.state, prepared.section, prepared.resolved
        check_grpc_probe(spec, health, prepared.state.pins)
        result.env = prepared.env
        result.layers = [StepLayer(layer, components) for layer, components in prepared.layers]
        result.added, result.downloaded = len(prepared.added), prepared.downloaded
        return result

    def close(self) -> None:
        self.session.close()


def has_os_python(os_packages: dict[str, str]) -> bool:
    """Whether the OS has a ``python3.X`` interpreter package (Debian's)."""
    return any(name.startswith("python3.") and name[8:].isdigit() for name in os_packages)


def service_entry(spec: ImageSpec) -> ServiceEntry | None:
    """What a service runs when its config sets no command (:mod:`lamina.python.entry`)."""
    service = spec.service
    if service is None:
        return None
    if spec.run.cmd is not None or spec.run.entrypoint is not None:
        command = [*(spec.run.entrypoint or []), *(spec.run.cmd or [])]
        serves_http = any(word.split("/")[-1] in HTTP_SERVERS for word in command)
        return ServiceEntry("command", command, "/healthz" if serves_http else "none", "command (lamina.toml)")
    entry = find_entry(service)
    if entry is None:
        raise ConfigError(f"{service.table}: found nothing to run in {service.folder}: no ASGI/WSGI app "
                          "(app = FastAPI() / Flask(__name__) or a create_app() factory), gRPC server, "
                          "__main__.py, __main__ block or console script",
                          hint=f"set app = \"module:app\" or command = [...] in [{service.table.rsplit('[', 1)[-1]}")
    return entry


def service_command(spec: ImageSpec) -> list[str] | None:
    """A service's command when its config sets none."""
    entry = service_entry(spec)
    return None if entry is None or spec.run.cmd is not None or spec.run.entrypoint is not None else entry.command


def service_health(spec: ImageSpec, entry: ServiceEntry | None) -> tuple[str | tuple[str, ...] | None, HealthCheck | None]:
    """The health setting and check of a service: lamina.toml's, else the one its kind calls for."""
    service = spec.service
    if service is None or entry is None:
        return None, None
    health = service.health if service.health is not None else entry.health
    return health, (None if service.health is not None else health_check(health, service.port))


def check_grpc_probe(spec: ImageSpec, health: object, pins: dict[str, str]) -> None:
    """The gRPC probe runs grpcio inside the image: refuse it when the image has no grpcio."""
    if health == "grpc" and "grpcio" not in pins:
        raise ConfigError(f"{spec.service.table if spec.service else spec.name}: health = \"grpc\" needs grpcio in "
                          f"the image (the probe calls grpc.health.v1.Health/Check with it), but {spec.name} has none",
                          hint="add grpcio to the service's requirements, or use health = \"tcp\" or a command")
