"""SBOMs from an inventory: valid by the field's own validators, exact, deterministic, linked to the base's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lamina.inventory import Component, Inventory, Placed
from lamina.supply import sbom_cyclonedx, sbom_spdx
from lamina.supply.facts import SbomInput

BASE_DIGEST = "sha256:" + "b" * 64
IMAGE_DIGEST = "sha256:" + "a" * 64
LAYER1, LAYER2, LAYER3 = ("sha256:" + c * 64 for c in "123")


def inventory() -> Inventory:
    deb = Component("deb", "libssl3", "3.0.15-1~deb12u1", "amd64", "c" * 64, 2_000_000,
                    "pool/main/o/openssl/libssl3_3.0.15-1~deb12u1_amd64.deb",
                    "https://deb.debian.org/debian/pool/main/o/openssl/libssl3_3.0.15-1~deb12u1_amd64.deb",
                    "openssl", "a dependency")
    tzdata = Component("deb", "tzdata", "2024a-0+deb12u1", "all", "d" * 64, 250_000, "pool/main/t/tzdata/x.deb",
                       "", "tzdata", "lamina.toml")
    wheel = Component("python", "Typing_Extensions", "4.12.2", "", "e" * 64, 37_000,
                      "typing_extensions-4.12.2-py3-none-any.whl",
                      "https://files.pythonhosted.org/packages/typing_extensions-4.12.2-py3-none-any.whl",
                      origin="requirements.txt:1")
    code = Component("files", "svc-forms services/forms → /app", filename="services/forms", origin="svc-forms")
    items = (Placed(deb, LAYER1, "sha256:" + "4" * 64, "base"), Placed(tzdata, LAYER1, "sha256:" + "4" * 64, "base"),
             Placed(wheel, LAYER2, "sha256:" + "5" * 64, "svc-forms"),
             Placed(code, LAYER3, "sha256:" + "6" * 64, "svc-forms"))
    return Inventory("svc-forms", "linux/amd64", items, base="base", base_digest=BASE_DIGEST, digest=IMAGE_DIGEST)


def source(**extra) -> SbomInput:
    return SbomInput(inventory(), "2024-01-01T00:00:00Z", distro="bookworm", version="1.2.0", **extra)


def base_source() -> SbomInput:
    inv = inventory()
    base = Inventory("base", "linux/amd64", inv.items[:2], digest=BASE_DIGEST)
    return SbomInput(base, "2024-01-01T00:00:00Z", distro="bookworm")


def test_spdx_is_valid_by_spdx_tools(tmp_path):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    path = tmp_path / "sbom.spdx.json"
    path.write_bytes(sbom_spdx.spdx_sbom(source(base_sbom=sbom_spdx.spdx_sbom(base_source()))))
    messages = validate_full_spdx_document(parse_file(str(path)), "SPDX-2.3")
    assert not messages, [m.validation_message for m in messages]


def test_spdx_passes_ntia_minimum_elements(tmp_path):
    path = tmp_path / "sbom.spdx.json"
    path.write_bytes(sbom_spdx.spdx_sbom(source(base_sbom=sbom_spdx.spdx_sbom(base_source()))))
    checker = Path(sys.executable).with_name("ntia-checker")
    result = subprocess.run([str(checker), "--comply", "ntia", "--output", "json", str(path)],
                            capture_output=True, text=True)
    report = json.loads(result.stdout)
    assert report["isConformant"] is True, json.dumps(report, indent=1)


def test_cyclonedx_is_valid_by_cyclonedx_python_lib():
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    document = sbom_cyclonedx.cyclonedx_sbom(source(base_sbom=sbom_cyclonedx.cyclonedx_sbom(base_source())))
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(document.decode(), all_errors=True)
    assert errors is None, [str(e) for e in errors]


@pytest.mark.parametrize("write", [sbom_spdx.spdx_sbom, sbom_cyclonedx.cyclonedx_sbom])
def test_same_image_same_bytes_other_image_other_ids(write):
    assert write(source()) == write(source())
    other = SbomInput(Inventory(**{**inventory().__dict__, "digest": "sha256:" + "f" * 64}), "2024-01-01T00:00:00Z")
    assert write(other) != write(source())


def test_spdx_lists_every_package_exactly():
    doc = json.loads(sbom_spdx.spdx_sbom(source()))
    by_name = {p["name"]: p for p in doc["packages"]}
    ssl = by_name["libssl3"]
    assert ssl["versionInfo"] == "3.0.15-1~deb12u1"
    assert ssl["checksums"] == [{"algorithm": "SHA256", "checksumValue": "c" * 64}]
    assert ssl["sourceInfo"] == "built package from: openssl"
    assert ssl["externalRefs"][0]["referenceLocator"] == \
        "pkg:deb/debian/libssl3@3.0.15-1~deb12u1?arch=amd64&distro=debian-12"
    assert by_name["tzdata"]["externalRefs"][0]["referenceLocator"].endswith("?arch=all&distro=debian-12")
    wheel = by_name["Typing_Extensions"]
    assert wheel["externalRefs"][0]["referenceLocator"] == "pkg:pypi/typing-extensions@4.12.2"
    assert wheel["checksums"][0]["checksumValue"] == "e" * 64
    code = by_name["svc-forms services/forms → /app"]
    assert LAYER3 in code["comment"] and code["versionInfo"] == "sha256:" + "6" * 64
    assert sbom_spdx.described_digest(sbom_spdx.spdx_sbom(source())) == IMAGE_DIGEST
    assert by_name["base"]["checksums"][0]["checksumValue"] == "b" * 64


def test_sboms_reference_the_base_images_own_sbom():
    base_spdx = sbom_spdx.spdx_sbom(base_source())
    doc = json.loads(sbom_spdx.spdx_sbom(source(base_sbom=base_spdx)))
    (ref,) = doc["externalDocumentRefs"]
    assert ref["spdxDocument"] == json.loads(base_spdx)["documentNamespace"]
    assert {"spdxElementId": "SPDXRef-BaseImage", "relationshipType": "DESCRIBED_BY",
            "relatedSpdxElement": "DocumentRef-base:SPDXRef-DOCUMENT"} in doc["relationships"]
    base_cdx = sbom_cyclonedx.cyclonedx_sbom(base_source())
    cdx = json.loads(sbom_cyclonedx.cyclonedx_sbom(source(base_sbom=base_cdx)))
    base = next(c for c in cdx["components"] if c["bom-ref"] == "base-image")
    assert base["externalReferences"][0]["url"] == \
        f"urn:cdx:{json.loads(base_cdx)['serialNumber'].removeprefix('urn:uuid:')}/1"


def test_both_formats_list_the_same_packages():
    assert sbom_spdx.packages_of(sbom_spdx.spdx_sbom(source())) == \
        sbom_cyclonedx.packages_of(sbom_cyclonedx.cyclonedx_sbom(source())) == {
            ("deb", "libssl3", "3.0.15-1~deb12u1", "c" * 64), ("deb", "tzdata", "2024a-0+deb12u1", "d" * 64),
            ("python", "Typing_Extensions", "4.12.2", "e" * 64)}
