"""The command line itself: help everywhere, one-line errors with hints, exit codes by error class."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lamina import cli
from lamina.cli import store as store_verb
from lamina.errors import (
    EXIT_CODES,
    AuthError,
    ConfigError,
    LaminaError,
    LockStaleError,
    NetworkError,
    NotFoundError,
    RegistryUnreachableError,
    ServiceCheckFailed,
    UsageError,
    exit_code,
)
from projects import make_hello_project, run_lamina

VERB_EXAMPLES = {
    "init": "lamina init",
    "build": "lamina build",
    "lock": "lamina lock",
    "check": "lamina check",
    "test": "lamina test",
    "export": "lamina export",
    "report": "lamina report",
    "diff": "lamina diff",
    "store": "lamina store",
    "sbom": "lamina sbom",
    "keygen": "lamina keygen",
    "sign": "lamina sign",
    "verify": "lamina verify",
    "outdated": "lamina outdated",
    "update": "lamina update",
    "plan": "lamina plan",
    "rebase": "lamina rebase",
}


def test_verbs_are_the_modules_of_the_package():
    assert set(cli.VERBS) == set(VERB_EXAMPLES)
    for verb in cli.VERBS:
        module = __import__(f"lamina.cli.{verb}", fromlist=["register", "run"])
        assert callable(module.register) and callable(module.run)


@pytest.mark.parametrize("verb", list(VERB_EXAMPLES))
def test_every_verb_has_help_with_examples(verb, tmp_path):
    result = run_lamina(verb, "--help", cwd=tmp_path)
    assert "examples:" in result.stdout and VERB_EXAMPLES[verb] in result.stdout.split("examples:")[1]


@pytest.mark.parametrize("action", ["path", "verify", "gc"])
def test_store_actions_have_help_with_an_example(action, tmp_path):
    result = run_lamina("store", action, "--help", cwd=tmp_path)
    assert f"lamina store {action}" in result.stdout.split("examples:")[1]


def test_top_help_lists_every_verb_and_the_exit_codes(tmp_path):
    out = run_lamina("--help", cwd=tmp_path).stdout
    commands = out.split("commands:")[1].split("examples:")[0]
    for verb in cli.VERBS:
        assert f"    {verb} " in commands, verb
    codes = out.split("exit codes:")[1]
    for _, code, _ in EXIT_CODES:
        assert f"  {code} " in codes
    assert "  70 " in codes and "  130 " in codes


def test_version(tmp_path):
    assert run_lamina("--version", cwd=tmp_path).stdout.startswith("lamina ")


def test_a_user_error_is_one_line_and_a_hint_without_traceback(tmp_path):
    make_hello_project(tmp_path)
    result = run_lamina("check", "nosuch", cwd=tmp_path, env={"LAMINA_STORE": str(tmp_path / "store")}, check=False)
    assert result.returncode == 2  # ConfigError
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "no image named 'nosuch'" in lines[0]
    assert lines[1].strip().startswith("hint: ") and len(lines) == 2
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    make_hello_project(tmp_path)
    env = {"LAMINA_STORE": str(tmp_path / "store")}
    for args in (("--debug", "check", "nosuch"), ("check", "nosuch", "--debug")):
        result = run_lamina(*args, cwd=tmp_path, env=env, check=False)
        assert result.returncode == 2
        assert "Traceback" in result.stderr and "ConfigError" in result.stderr
        assert "error: " in result.stderr and "hint: " in result.stderr


def test_usage_errors_exit_2(tmp_path):
    assert run_lamina("build", "--no-such-flag", cwd=tmp_path, check=False).returncode == 2
    assert run_lamina(cwd=tmp_path, check=False).returncode == 2
    make_hello_project(tmp_path)
    result = run_lamina("build", "--username", "me", cwd=tmp_path, env={"LAMINA_STORE": str(tmp_path / "store")},
                        check=False)
    assert result.returncode == 2 and "--password-stdin" in result.stderr


@pytest.mark.parametrize(("error", "code"), [
    (LaminaError("x"), 1),
    (ConfigError("x"), 2),
    (UsageError("x"), 2),
    (ServiceCheckFailed("x"), 3),
    (AuthError("x"), 4),
    (NotFoundError("x"), 4),
    (RegistryUnreachableError("x"), 4),
    (NetworkError("x"), 4),
    (LockStaleError("x"), 5),
])
def test_exit_code_by_error_class(error, code, monkeypatch, capsys):
    def fail(args):
        raise error

    monkeypatch.setattr(store_verb, "run_path", fail)
    assert exit_code(error) == code
    assert cli.main(["store", "path"]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: x") and "Traceback" not in err


def test_the_debian_mirror_being_down_is_a_network_error():
    from lamina.debian.archive import ArchiveUnreachableError

    assert exit_code(ArchiveUnreachableError("x")) == 4


def test_an_unexpected_exception_is_one_line_exit_70(monkeypatch, capsys):
    def crash(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(store_verb, "run_path", crash)
    assert cli.main(["store", "path"]) == 70
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "RuntimeError: boom" in err and "--debug" in err
    assert cli.main(["--debug", "store", "path"]) == 70
    assert "Traceback" in capsys.readouterr().err


def test_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_verb, "run_path", interrupted)
    assert cli.main(["store", "path"]) == 130


def test_the_library_does_not_need_the_cli():
    # httpx imports its own CLI (and so rich) when click is installed, as spdx-tools' click is in the test
    # extra: keep httpx's CLI out, so that what is checked is what lamina imports.
    code = ("import sys; sys.modules['httpx._main'] = None; "
            "from lamina.session import Session; import lamina.lockdiff, lamina.summary; "
            "bad = [m for m in sys.modules if m == 'rich' or m.startswith(('rich.', 'lamina.cli'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_session_opens_a_project_without_argparse(tmp_path):
    from lamina.session import Session

    make_hello_project(tmp_path)
    with Session.open(tmp_path / "lamina.toml", store_root=tmp_path / "store", registry="127.0.0.1:5000",
                      owner="me", insecure=["example.test"], username="u", password="p") as session:
        assert session.config.registry == "127.0.0.1:5000" and session.config.owner == "me"
        assert "example.test" in session.registries.insecure
        assert session.registries.credential.username == "u"
        assert session.images() == ["busybox", "hello"] and session.tag == "1.0"
        assert session.lock.path == tmp_path / "lamina.lock"
    with pytest.raises(UsageError):
        Session.open(tmp_path / "lamina.toml", store_root=tmp_path / "store", username="u")


def test_lock_changes_are_described_by_name():
    from lamina.lockdiff import diff_section

    old = {"dists": [{"name": "a", "version": "1"}, {"name": "b", "version": "1"}]}
    new = {"dists": [{"name": "a", "version": "2"}, {"name": "c", "version": "1"}]}
    assert diff_section(None, new, "dists").describe() == "new"
    assert diff_section(old, old, "dists").describe() == "unchanged"
    assert diff_section(old, new, "dists").describe() == "+c, -b, a 1 → 2"


def test_main_returns_the_exit_code_of_usage_errors_and_help(capsys):
    assert cli.main(["build", "--no-such-flag"]) == 2
    assert cli.main(["--help"]) == 0
    assert cli.main(["store"]) == 2
    assert "lamina store needs an action" in capsys.readouterr().err


def test_a_long_error_stays_one_line_wider_than_the_console(monkeypatch, capsys):
    def fail(args):
        raise LockStaleError("word " * 40, hint="more " * 40)

    monkeypatch.setattr(store_verb, "run_path", fail)
    assert cli.main(["store", "path"]) == 5
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
