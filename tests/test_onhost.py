"""`lamina build --on ssh://...`: the project sent (only what changed) and built there, against a real sshd on
loopback with a throwaway host key and client key, and a loopback registry."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import SRC, require_tool
from helpers import LOOPBACK, run_lamina
from projects import make_hello_project
from registry_servers import free_port, unique_repo

pytestmark = pytest.mark.registry

SSHD = "/usr/sbin/sshd"


@dataclass
class Sshd:
    port: int
    identity: Path
    known_hosts: Path
    user: str

    def url(self, folder: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{folder}"


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lamina-test", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def sshd(tmp_path) -> Sshd:
    if not Path(SSHD).exists():
        pytest.skip("sshd not installed: apt-get install openssh-server")
    require_tool("ssh", "openssh-client")
    require_tool("ssh-keygen", "openssh-client")
    if os.geteuid() != 0:
        pytest.skip("the loopback sshd test logs in as the current user with a throwaway key; it needs root here")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory (Debian's path)
    d = tmp_path / "sshd"
    d.mkdir(mode=0o700)
    host_pub = _keygen(d / "host_key")
    (d / "authorized_keys").write_text(_keygen(d / "client_key") + "\n")
    port = free_port()
    config = d / "sshd_config"
    config.write_text(f"""\
ListenAddress 127.0.0.1
HostKey {d / "host_key"}
AuthorizedKeysFile {d / "authorized_keys"}
PidFile {d / "sshd.pid"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
""")
    log = open(d / "sshd.log", "wb")
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config), "-p", str(port)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError((d / "sshd.log").read_text())
            time.sleep(0.05)
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {' '.join(host_pub.split()[:2])}\n")
    try:
        yield Sshd(port, d / "client_key", known, os.environ.get("USER") or "root")
    finally:
        process.terminate()
        process.wait(5)
        log.close()


def remote_lamina(store: Path) -> str:
    """How the "remote" runs lamina: this checkout's, with its own store (an ssh session has a bare environment)."""
    return f"env LAMINA_STORE={store} NO_PROXY={LOOPBACK} PYTHONPATH={SRC} {sys.executable} -m lamina"


def build_on(project: Path, sshd: Sshd, remote: Path, *args: str, known_hosts: Path | None = None, check=True):
    return run_lamina("build", "--on", sshd.url(remote), "--known-hosts", str(known_hosts or sshd.known_hosts),
                      "--identity", str(sshd.identity), "--remote-lamina", remote_lamina(remote.parent / "store"),
                      *args, cwd=project, env={"LAMINA_STORE": str(project.parent / "local-store")}, check=check)


def test_the_family_is_built_and_pushed_there_and_a_second_run_sends_only_the_changed_file(tmp_path, sshd, registry):
    project = tmp_path / "here" / "project"
    project.mkdir(parents=True)
    make_hello_project(project)
    remote = tmp_path / "there" / "project"
    owner = unique_repo("onhost")
    push = ("--push", "--registry", registry.host, "--owner", owner, "--json", "-v")
    first = build_on(project, sshd, remote, *push)
    summary = json.loads(first.stdout)  # the remote's summary, streamed back
    assert {p["target"].rsplit("/", 1)[1] for p in summary["pushed"]} == {"busybox:1.0", "hello:1.0"}
    sent = len([p for p in project.rglob("*") if p.is_file() or p.is_symlink()])
    assert f"sent {sent} changed file(s)" in first.stderr
    assert (remote / "app" / "hello.sh").read_bytes() == (project / "app" / "hello.sh").read_bytes()
    assert os.access(remote / "app" / "hello.sh", os.X_OK)
    assert not (project.parent / "local-store").exists() or not any((project.parent / "local-store").iterdir())

    (project / "app" / "message.txt").write_text("version 2\n")
    (project / "rootfs" / "bin" / "true").unlink()
    second = build_on(project, sshd, remote, *push)
    assert "sent 1 changed file(s), 1 deleted" in second.stderr
    assert "  app/message.txt" in second.stderr
    assert not (remote / "rootfs" / "bin" / "true").exists()
    again = json.loads(second.stdout)
    assert {i["name"]: i["built_layers"] for i in again["images"]} == {"busybox": 1, "hello": 1}


def test_the_exit_status_is_the_remote_builds(tmp_path, sshd):
    project = tmp_path / "here" / "project"
    project.mkdir(parents=True)
    make_hello_project(project)
    local = run_lamina("build", "nosuchimage", cwd=project, check=False,
                       env={"LAMINA_STORE": str(tmp_path / "local-store")})
    there = build_on(project, sshd, tmp_path / "there" / "project", "nosuchimage", check=False)
    assert there.returncode == local.returncode != 0
    assert "nosuchimage" in there.stderr


def test_an_unknown_host_key_is_refused(tmp_path, sshd):
    project = tmp_path / "project"
    project.mkdir()
    make_hello_project(project)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    result = build_on(project, sshd, tmp_path / "there", known_hosts=empty, check=False)
    assert result.returncode != 0
    assert "host key is unknown or has changed" in result.stderr
    assert not (tmp_path / "there").exists()


def test_lamina_missing_there_says_how_to_install_it(tmp_path, sshd):
    project = tmp_path / "project"
    project.mkdir()
    make_hello_project(project)
    result = run_lamina("build", "--on", sshd.url(tmp_path / "there"), "--known-hosts", str(sshd.known_hosts),
                        "--identity", str(sshd.identity), "--remote-lamina", "/nonexistent/lamina",
                        cwd=project, check=False)
    assert result.returncode != 0
    assert "does not run there" in result.stderr and "install lamina there" in result.stderr
