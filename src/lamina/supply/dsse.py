"""DSSE envelopes (Dead Simple Signing Envelope, as in-toto and cosign attestations use them).

The signature covers the pre-authentication encoding ``DSSEv1 <len type> <type> <len body> <body>``, so
neither the payload nor its type can be swapped. ``keyid`` is empty, as cosign writes it for keys.
"""

from __future__ import annotations

import base64
import json

from lamina.supply.keys import PrivateKey, PublicKey
from lamina.supply.errors import VerificationError

MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_envelope(payload: bytes, key: PrivateKey, payload_type: str = IN_TOTO) -> bytes:
    """The envelope JSON (deterministic: the signature is RFC 6979)."""
    signature = key.sign(pae(payload_type, payload))
    envelope = {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def open_envelope(envelope: bytes, key: PublicKey, payload_type: str = IN_TOTO) -> bytes:
    """The payload of ``envelope`` if one of its signatures verifies with ``key``; else raise."""
    try:
        obj = json.loads(envelope)
        kind, payload = obj["payloadType"], base64.b64decode(obj["payload"], validate=True)
        signatures = [base64.b64decode(s["sig"]) for s in obj["signatures"]]
    except (ValueError, KeyError, TypeError) as e:
        raise VerificationError(f"the attestation is not a DSSE envelope ({e})") from None
    if kind != payload_type:
        raise VerificationError(f"the attestation's payload type is {kind!r}, not {payload_type!r}")
    if not any(key.verifies(sig, pae(kind, payload)) for sig in signatures):
        raise VerificationError("the attestation's signature does not verify with the key",
                                hint="it was changed after signing, or signed with another key")
    return payload
