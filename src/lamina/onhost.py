"""``lamina build --on ssh://user@host[:port][/dir]``: the build runs on another machine (the seed's
"Option A": base-ml built next to the registry, so its gigabyte never crosses a slow uplink).

Three ssh sessions, with the system's ``ssh`` client (so ``~/.ssh/config``, agents and keys work as
for any ssh use), host keys always verified (``StrictHostKeyChecking=yes``: an unknown or changed
host key fails, it is never accepted silently), never a password prompt (``BatchMode=yes``):

1. ``lamina --version`` there (it must be installed there: the error says how), and the manifest of
   what the last send left there (``.lamina-sent.json``: path → sha256 and mode);
2. a gzip'd tar of the project's files that are new or changed since, plus the list of those deleted;
3. the same ``lamina build`` arguments, run there in that folder, its output streamed back as it
   comes, its exit status ours. Registry credentials are the remote's own (its Docker config,
   environment or credential helpers): nothing secret is sent.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import subprocess
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from lamina.errors import LaminaError, UsageError

MANIFEST = ".lamina-sent.json"
DELETE_LIST = ".lamina-delete"
DEFAULT_FOLDER = "lamina-builds"
#: Never sent: version control, virtual environments, caches, and what builds write.
SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".venv", "venv", ".ci-venv", "__pycache__", ".pytest_cache", ".mypy_cache",
                       ".ruff_cache", "node_modules", "build"})


@dataclass(frozen=True)
class Host:
    """Where to build: ``ssh://[user@]host[:port][/dir]``."""

    host: str
    user: str | None = None
    port: int | None = None
    folder: str | None = None

    @classmethod
    def parse(cls, text: str) -> Host:
        parts = urlsplit(text)
        if parts.scheme != "ssh" or not parts.hostname:
            raise UsageError(f"--on {text!r}: expected ssh://[user@]host[:port][/dir]",
                             hint="e.g. --on ssh://deploy@build.example.com/srv/lamina")
        try:
            port = parts.port
        except ValueError:
            raise UsageError(f"--on {text!r}: bad port") from None
        folder = parts.path if parts.path not in ("", "/") else None
        return cls(parts.hostname, parts.username, port, folder)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"ssh://{self.destination}{port}{self.folder or ''}"


@dataclass
class SshClient:
    """The system's ssh client with lamina's fixed safety options."""

    host: Host
    known_hosts: Path | None = None
    identity: Path | None = None
    ssh: str = "ssh"

    def command(self, remote: str) -> list[str]:
        cmd = [self.ssh, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        if self.known_hosts is not None:
            cmd += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if self.identity is not None:
            cmd += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        if self.host.port:
            cmd += ["-p", str(self.host.port)]
        return [*cmd, "--", self.host.destination, remote]

    def run(self, remote: str, *, data: bytes | None = None, what: str) -> str:
        """Run ``remote`` there and return its stdout; an ssh or remote failure is an error naming ``what``."""
        result = subprocess.run(self.command(remote), input=data, capture_output=True)
        if result.returncode != 0:
            raise _ssh_error(self.host, result.returncode, result.stderr.decode(errors="replace"), what)
        return result.stdout.decode(errors="replace")

    def stream(self, remote: str) -> int:
        """Run ``remote`` there with our stdin, stdout and stderr; its exit status."""
        return subprocess.run(self.command(remote)).returncode


def _ssh_error(host: Host, code: int, stderr: str, what: str) -> LaminaError:
    text = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {code}"
    if "Host key verification failed" in stderr or "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return LaminaError(f"{host}: the host key is unknown or has changed ({what})",
                           hint=f"check the key, then add it to ~/.ssh/known_hosts (ssh-keyscan -p PORT HOST, "
                                f"compared with the host's fingerprint) or pass --known-hosts FILE")
    if code == 255:
        return LaminaError(f"{host}: ssh failed ({what}): {text}",
                           hint="check that `ssh` reaches the host with a key (no password prompt is answered)")
    return LaminaError(f"{host}: {what} failed: {text}")


# -- what is sent ------------------------------------------------------------------------------------


def project_files(root: Path) -> dict[str, tuple[str, int]]:
    """Every file of the project to send: relative POSIX path → (sha256, mode); symlinks as ``link:target``."""
    found: dict[str, tuple[str, int]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if rel in (MANIFEST, DELETE_LIST) or name.endswith((".pyc", ".pyo")):
                continue
            if path.is_symlink():
                found[rel] = ("link:" + os.readlink(path), 0o777)
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            found[rel] = (digest.hexdigest(), 0o755 if os.stat(path).st_mode & 0o111 else 0o644)
    return found


def changes(local: Mapping[str, tuple[str, int]], remote: Mapping[str, Sequence[object]]) -> tuple[list[str], list[str]]:
    """(paths to send, paths to delete there)."""
    send = [p for p, facts in local.items() if tuple(remote.get(p, ())) != tuple(facts)]
    delete = sorted(p for p in remote if p not in local)
    return send, delete


def bundle(root: Path, files: Mapping[str, tuple[str, int]], send: Iterable[str], delete: Sequence[str]) -> bytes:
    """A gzip'd tar of the files to send, the deletions, and the new manifest (written last)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(send):
            digest, mode = files[rel]
            info = tarfile.TarInfo(rel)
            info.mode = mode
            if digest.startswith("link:"):
                info.type, info.linkname = tarfile.SYMTYPE, digest[5:]
                tar.addfile(info)
                continue
            path = root / rel
            info.size = path.stat().st_size
            with open(path, "rb") as f:
                tar.addfile(info, f)
        for name, data in ((DELETE_LIST, "\0".join(delete).encode()),
                           (MANIFEST, json.dumps({p: list(v) for p, v in sorted(files.items())}).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


# -- the run ------------------------------------------------------------------------------------------


@dataclass
class SendReport:
    sent: list[str]
    deleted: list[str]
    bytes: int


def folder_of(host: Host, root: Path) -> str:
    """The project's folder there: the URL's path, else ``lamina-builds/<project folder>`` in the home."""
    return host.folder or str(PurePosixPath(DEFAULT_FOLDER) / root.name)


def check_lamina(client: SshClient, lamina: str, folder: str) -> dict[str, list[object]]:
    """Check lamina runs there; the manifest of the last send (empty the first time)."""
    probe = (f"{lamina} --version >/dev/null 2>&1 || {{ echo 'lamina-missing' >&2; exit 3; }}; "
             f"cat {shlex.quote(folder)}/{MANIFEST} 2>/dev/null || true")
    try:
        out = client.run(probe, what="checking lamina there")
    except LaminaError as e:
        if "lamina-missing" in e.message:
            raise LaminaError(f"{client.host}: `{lamina}` does not run there",
                              hint="install lamina there (python3 -m pip install --user lamina, or into a venv) and "
                                   "pass --remote-lamina PATH if it is not on the PATH of a non-interactive ssh "
                                   "session") from None
        raise
    try:
        return json.loads(out) if out.strip() else {}
    except ValueError:
        return {}  # a torn manifest: everything is sent again


def send(client: SshClient, root: Path, folder: str, remote: Mapping[str, Sequence[object]]) -> SendReport:
    """Send what changed since the last send (by content hash) and delete what is gone."""
    files = project_files(root)
    to_send, to_delete = changes(files, remote)
    data = bundle(root, files, to_send, to_delete)
    q = shlex.quote(folder)
    client.run(f"mkdir -p {q} && cd {q} && tar -xzf - && xargs -0 -r rm -f -- < {DELETE_LIST} && rm -f {DELETE_LIST}",
               data=data, what="sending the project")
    return SendReport(to_send, to_delete, len(data))


def build_there(host: Host, root: Path, argv: Sequence[str], *, known_hosts: Path | None = None,
                identity: Path | None = None, lamina: str = "lamina",
                on_sent: Callable[[SendReport], None] | None = None) -> int:
    """Send the project at ``root`` to ``host`` and run ``lamina ARGV`` there; its exit status."""
    client = SshClient(host, known_hosts, identity)
    folder = folder_of(host, root)
    remote = check_lamina(client, lamina, folder)
    report = send(client, root, folder, remote)
    if on_sent is not None:
        on_sent(report)
    return client.stream(f"cd {shlex.quote(folder)} && {lamina} {shlex.join(argv)}")


def remote_argv(argv: Sequence[str], root: Path, config: Path) -> list[str]:
    """The build's arguments without those that only mean something here (--on and its options); the
    config file named relative to the project folder."""
    drop_with_value = {"--on", "--known-hosts", "--identity", "--remote-lamina", "-c", "--config"}
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in drop_with_value:
            skip = "=" not in arg
            continue
        out.append(arg)
    if config.name != "lamina.toml" or config.parent != root:
        out += ["--config", config.relative_to(root).as_posix()]
    return out
