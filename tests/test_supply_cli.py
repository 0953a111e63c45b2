"""The supply-chain verbs as a user and a CI step run them: keygen, sign, verify, sbom (exit codes, lines)."""

from __future__ import annotations

import json

import pytest

from lamina.oci.store import BlobStore
from projects import run_lamina
from registry_servers import unique_repo
from supply_images import push_tiny

pytestmark = pytest.mark.registry
PASSWORD = "s3cret-pw"


def test_keygen_takes_the_password_from_stdin_or_the_environment_and_never_prints_it(tmp_path):
    piped = run_lamina("keygen", "--output-prefix", "a/cosign", cwd=tmp_path, stdin=PASSWORD + "\n")
    assert (tmp_path / "a" / "cosign.key").read_text().startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    from_env = run_lamina("keygen", "--output-prefix", "b/cosign", cwd=tmp_path, env={"COSIGN_PASSWORD": PASSWORD})
    for result in (piped, from_env):
        assert PASSWORD not in result.stdout + result.stderr
    again = run_lamina("keygen", "--output-prefix", "b/cosign", cwd=tmp_path, env={"COSIGN_PASSWORD": PASSWORD},
                       check=False)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_sign_then_verify_with_exit_codes_for_ci(registry, tmp_path):
    run_lamina("keygen", "--output-prefix", "k", cwd=tmp_path, env={"LAMINA_KEY_PASSWORD": PASSWORD})
    run_lamina("keygen", "--output-prefix", "other", cwd=tmp_path, env={"LAMINA_KEY_PASSWORD": PASSWORD})
    ref, image = push_tiny(BlobStore(tmp_path / "store"), registry.host, unique_repo("cli"))
    wrong_pw = run_lamina("sign", str(ref), "--key", "k.key", cwd=tmp_path, stdin="nope\n", check=False)
    assert wrong_pw.returncode == 1 and "wrong password" in wrong_pw.stderr
    signed = run_lamina("sign", str(ref), "--key", "k.key", cwd=tmp_path, stdin=PASSWORD + "\n")
    assert f"signed: {registry.host}/{ref.repository}@{image.digest}" in signed.stderr

    ok = run_lamina("verify", str(ref), "--key", "k.pub", "--signature-only", cwd=tmp_path)
    assert ok.stdout.startswith(f"ok   signature {image.digest[:19]}: 1 signature(s) verified")
    as_json = json.loads(run_lamina("verify", str(ref), "--key", "k.pub", "--signature-only", "--json",
                                    cwd=tmp_path).stdout)
    assert as_json["verified"] is True and as_json["digest"] == image.digest

    other = run_lamina("verify", str(ref), "--key", "other.pub", "--signature-only", cwd=tmp_path, check=False)
    assert other.returncode == 7
    assert other.stdout.startswith("FAIL signature") and "is not trusted" in other.stderr
    # the full check wants the provenance and SBOMs a lamina build attaches
    full = run_lamina("verify", str(ref), "--key", "k.pub", cwd=tmp_path, check=False)
    assert full.returncode == 7
    assert [line.split()[:2] for line in full.stdout.splitlines()] == [
        ["ok", "signature"], ["FAIL", "provenance"], ["FAIL", "SPDX"], ["FAIL", "CycloneDX"]]
    missing = run_lamina("verify", f"{registry.host}/{ref.repository}:nope", "--key", "k.pub", cwd=tmp_path,
                         check=False)
    assert missing.returncode == 4
