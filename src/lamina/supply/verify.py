"""``lamina verify``: is this image signed with this key, and do its provenance and SBOMs hold?

For the manifest a reference names (and, for an index, every platform manifest in it):

1. a cosign signature of the digest verifies with the key (:mod:`lamina.supply.sign`);
2. a provenance attestation is attached whose DSSE signature verifies with the key, whose subject is
   this digest and whose predicate is SLSA provenance v1;
3. every SPDX and CycloneDX SBOM attached describes this digest, is one the signed provenance lists
   by digest (so it was not changed or added afterwards), and lists exactly the ``.deb`` and wheel
   dependencies (name, version, SHA256) the provenance lists.

Each check gives one line; the outcome is an exit code a CI step can use (:data:`EXIT_OK`,
:data:`EXIT_FAILED`; errors that stop the check, such as an unreachable registry, are LaminaErrors).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lamina.errors import LaminaError
from lamina.oci.digest import hex_of
from lamina.oci.reference import Reference
from lamina.oci.referrers import fetch_artifact, list_referrers
from lamina.oci.registry.client import RegistryClient
from lamina.supply import dsse, sbom_cyclonedx, sbom_spdx
from lamina.supply.attach import ATTESTATION_TYPE, CYCLONEDX_TYPE, SPDX_TYPE
from lamina.supply.errors import VerificationError
from lamina.supply.keys import PublicKey
from lamina.supply.provenance import PREDICATE_TYPE, comparable, dependency_set
from lamina.supply.sign import manifests_to_sign, verify_signatures

EXIT_OK, EXIT_FAILED = 0, 1
SBOM_READERS: dict[str, tuple[str, Callable[[bytes], str], Callable[[bytes], set]]] = {
    SPDX_TYPE: ("SPDX SBOM", sbom_spdx.described_digest, sbom_spdx.packages_of),
    CYCLONEDX_TYPE: ("CycloneDX SBOM", sbom_cyclonedx.described_digest, sbom_cyclonedx.packages_of),
}


@dataclass(frozen=True)
class Check:
    what: str
    digest: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.what} {self.digest[:19]}: {self.message}"


@dataclass
class Report:
    reference: str
    digest: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED


def verify_image(client: RegistryClient, ref: Reference, key: PublicKey, *, attestations: bool = True) -> Report:
    """Run every check on ``ref``; a failed check is recorded, not raised."""
    found = client.head_manifest(ref.repository, ref.identifier)
    if found is None:
        raise LaminaError(f"{ref} does not exist", hint="check the reference (registry/repository:tag or @digest)")
    digest = found[0]
    if ref.digest and ref.digest != digest:
        raise LaminaError(f"the registry answered {digest} for {ref}")
    report = Report(str(ref), digest)
    targets = manifests_to_sign(client, ref.repository, digest)
    for target in targets:
        report.checks.append(_run("signature", target, lambda t=target: _signature(client, ref, t, key)))
        if attestations and (target != digest or len(targets) == 1):
            statement: dict[str, Any] = {}
            report.checks.append(_run("provenance", target,
                                      lambda t=target: _provenance(client, ref.repository, t, key, statement)))
            for media_type in SBOM_READERS:
                report.checks.append(_run(SBOM_READERS[media_type][0], target,
                                          lambda t=target, m=media_type: _sboms(client, ref.repository, t, m,
                                                                                statement)))
    return report


def _run(what: str, digest: str, check: Callable[[], str]) -> Check:
    try:
        return Check(what, digest, True, check())
    except VerificationError as e:
        return Check(what, digest, False, e.message)


def _signature(client: RegistryClient, ref: Reference, digest: str, key: PublicKey) -> str:
    result = verify_signatures(client, ref, digest, key)
    extra = f" ({len(result.rejected)} other signature(s) not by this key)" if result.rejected else ""
    return f"{result.valid} signature(s) verified with the key{extra}"


def _provenance(client: RegistryClient, repo: str, digest: str, key: PublicKey, out: dict[str, Any]) -> str:
    entries = list_referrers(client, repo, digest, artifact_type=ATTESTATION_TYPE)
    if not entries:
        raise VerificationError("no provenance attestation is attached",
                                hint="build with `lamina build --push --sign KEY`")
    reasons = []
    for entry in entries:
        artifact = fetch_artifact(client, repo, entry["digest"])
        try:
            statement = json.loads(dsse.open_envelope(artifact.layer(dsse.MEDIA_TYPE), key))
            _check_statement(statement, digest)
        except (VerificationError, LaminaError, ValueError) as e:
            reasons.append(getattr(e, "message", str(e)))
            continue
        out.update(statement)
        deps = len(statement["predicate"]["buildDefinition"].get("resolvedDependencies", []))
        return f"SLSA provenance signed with the key, {deps} resolved dependencies"
    raise VerificationError("; ".join(reasons))


def _check_statement(statement: dict[str, Any], digest: str) -> None:
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise VerificationError(f"the attestation's predicate is {statement.get('predicateType')!r}, not SLSA v1")
    subjects = {s.get("digest", {}).get("sha256") for s in statement.get("subject", [])}
    if hex_of(digest) not in subjects:
        raise VerificationError("the attestation's subject is another image")


def _sboms(client: RegistryClient, repo: str, digest: str, media_type: str, statement: dict[str, Any]) -> str:
    name, described, packages = SBOM_READERS[media_type]
    entries = list_referrers(client, repo, digest, artifact_type=media_type)
    if not entries:
        raise VerificationError(f"no {name} is attached")
    if not statement:
        raise VerificationError(f"the {name} cannot be checked without a verified provenance")
    vouched = {p.get("digest", {}).get("sha256") for p in statement["predicate"]["runDetails"].get("byproducts", [])}
    expected = dependency_set(statement)
    for entry in entries:
        document = fetch_artifact(client, repo, entry["digest"]).layer(media_type)
        if described(document) != digest:
            raise VerificationError(f"the {name} {entry['digest'][:19]} describes {described(document) or 'nothing'}, "
                                    "not this image")
        if hashlib.sha256(document).hexdigest() not in vouched:
            raise VerificationError(f"the {name} {entry['digest'][:19]} is not the one the signed provenance lists "
                                    "(changed or added after signing)")
        listed = comparable(packages(document))
        if listed != expected:
            missing, extra = sorted(expected - listed), sorted(listed - expected)
            raise VerificationError(f"the {name} lists other packages than the provenance: "
                                    f"missing {[m[1] for m in missing][:5]}, extra {[e[1] for e in extra][:5]}")
    return f"describes this image; its {len(expected)} packages match the signed provenance"
