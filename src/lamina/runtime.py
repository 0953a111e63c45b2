"""Running a built image to see it healthy (``lamina test``): the seed's "test base images: ensure
health checks pass before building services", done with podman, no daemon.

podman ignores HEALTHCHECK in OCI-format images (it reads it from Docker-format ones only), so the
image's own health check is passed to ``podman run`` explicitly, then run until it passes.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lamina.errors import LaminaError

PODMAN_ENV = "LAMINA_PODMAN"
RUN_FLAGS_ENV = "LAMINA_PODMAN_RUN_FLAGS"
NS = 1_000_000_000


@dataclass(frozen=True)
class Podman:
    """The podman command (with its global flags) and the flags for ``podman run``."""

    command: tuple[str, ...] = ("podman",)
    run_flags: tuple[str, ...] = ()

    @classmethod
    def configured(cls, command: Sequence[str] = (), run_flags: Sequence[str] = (),
                   env: Mapping[str, str] = os.environ) -> Podman | None:
        """From ``LAMINA_PODMAN`` / ``LAMINA_PODMAN_RUN_FLAGS`` (they win), else lamina.toml's ``[test]``;
        None when podman is not installed."""
        cmd = tuple(shlex.split(env[PODMAN_ENV])) if env.get(PODMAN_ENV) else tuple(command) or ("podman",)
        flags = tuple(shlex.split(env[RUN_FLAGS_ENV])) if env.get(RUN_FLAGS_ENV) else tuple(run_flags)
        if shutil.which(cmd[0]) is None:
            return None
        return cls(cmd, flags)

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.command, *args], capture_output=True, text=True, timeout=timeout)


@dataclass
class HealthResult:
    image: str
    healthy: bool
    seconds: float
    detail: str = ""
    logs: str = ""
    checks: int = 0


def health_flags(healthcheck: Mapping[str, object]) -> list[str]:
    """``podman run`` flags carrying an image config's ``Healthcheck``."""
    test = list(healthcheck.get("Test") or [])  # type: ignore[arg-type]
    if not test or test[0] == "NONE":
        return []
    command = json.dumps(test[1:]) if test[0] == "CMD" else str(test[1])
    flags = ["--health-cmd", command]
    for key, flag in (("Interval", "--health-interval"), ("Timeout", "--health-timeout"),
                      ("StartPeriod", "--health-start-period")):
        value = int(healthcheck.get(key) or 0)  # type: ignore[call-overload]
        if value:
            flags += [flag, f"{value / NS:g}s"]
    if healthcheck.get("Retries"):
        flags += ["--health-retries", str(healthcheck["Retries"])]
    return flags


@dataclass
class HealthTest:
    """Start ``image`` (a podman image reference, e.g. ``oci:DIR:NAME:TAG``) and wait until its health
    check passes, or fails more times than it allows, or the container stops. An image that declares
    no check (a worker: ``health = "none"``) passes when it is still running after ``settle`` seconds.
    The container is always removed, whatever happened."""

    podman: Podman
    image: str
    healthcheck: Mapping[str, object]
    extra_time: float = 30
    name: str = field(default_factory=lambda: f"lamina-test-{uuid.uuid4().hex[:8]}")
    #: The check in words (the image's ``dev.lamina.health`` label), for messages.
    describe: str = ""
    settle: float = 5

    def run(self) -> HealthResult:
        flags = health_flags(self.healthcheck)
        started = time.monotonic()
        try:
            run = self.podman("run", "-d", "--name", self.name, *self.podman.run_flags, *flags, self.image, timeout=600)
            if run.returncode != 0:
                return HealthResult(self.image, False, time.monotonic() - started,
                                    f"podman run failed: {run.stderr.strip()}")
            if not flags:
                return self._stays_up(started)
            return self._wait(started)
        finally:
            self.podman("rm", "-f", "-t", "2", self.name)

    def _stays_up(self, started: float) -> HealthResult:
        deadline = started + self.settle
        while time.monotonic() < deadline:
            if not self._running():
                return self._result(False, started, "the container stopped (it declares no health check, so it "
                                    "must keep running)", 0)
            time.sleep(0.5)
        return self._result(True, started, f"still running after {self.settle:g}s (no health check declared)", 0)

    def _wait(self, started: float) -> HealthResult:
        interval = max(1.0, int(self.healthcheck.get("Interval") or 0) / NS)  # type: ignore[call-overload]
        retries = int(self.healthcheck.get("Retries") or 3)  # type: ignore[call-overload]
        period = int(self.healthcheck.get("StartPeriod") or 0) / NS  # type: ignore[call-overload]
        deadline = started + period + interval * (retries + 1) + self.extra_time
        checks = 0
        while time.monotonic() < deadline:
            if not self._running():
                return self._result(False, started, "the container stopped", checks)
            checks += 1
            if self.podman("healthcheck", "run", self.name).returncode == 0:
                return self._result(True, started, "healthy", checks)
            time.sleep(min(1.0, interval))
        return self._result(False, started, f"not healthy after {time.monotonic() - started:.0f}s", checks)

    def _running(self) -> bool:
        out = self.podman("inspect", "--format", "{{.State.Running}}", self.name)
        return out.stdout.strip() == "true"

    def _last_check_output(self) -> str:
        """What the last run of the check printed (podman keeps a log of them)."""
        for key in (".State.Health", ".State.Healthcheck"):
            out = self.podman("inspect", "--format", "{{json %s}}" % key, self.name)
            try:
                log = (json.loads(out.stdout) or {}).get("Log") or []
            except (json.JSONDecodeError, AttributeError):
                continue
            if log:
                last = log[-1]
                return f"exit {last.get('ExitCode')}: {(last.get('Output') or '').strip()[-400:]}"
        return ""

    def _result(self, healthy: bool, started: float, detail: str, checks: int) -> HealthResult:
        if not healthy:
            what = self.describe or describe_test(self.healthcheck)
            detail = f"{detail}; its check: {what}"
            if checks and (last := self._last_check_output()):
                detail += f"; last check: {last}"
        logs = "" if healthy else self.podman("logs", "--tail", "30", self.name).stdout
        return HealthResult(self.image, healthy, time.monotonic() - started, detail, logs, checks)


def describe_test(healthcheck: Mapping[str, object]) -> str:
    test = list(healthcheck.get("Test") or [])  # type: ignore[arg-type]
    if not test or test[0] == "NONE":
        return "none declared"
    return ("exec " if test[0] == "CMD" else "shell ") + " ".join(shlex.quote(str(t)) for t in test[1:])
