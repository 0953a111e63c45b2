"""Signing keys in cosign's format: an ECDSA P-256 pair, the private half encrypted at rest.

The private key file is the PEM block ``ENCRYPTED SIGSTORE PRIVATE KEY`` (cosign >= 2; cosign 1 wrote
``ENCRYPTED COSIGN PRIVATE KEY``, read too) whose body is the JSON envelope of
go-securesystemslib's ``encrypted`` package: the PKCS#8 DER key sealed by NaCl secretbox
(XSalsa20-Poly1305) under a key derived from the password by scrypt (N=32768, r=8, p=1). The same file
works with ``cosign sign --key`` and ``skopeo copy --sign-by-sigstore-private-key``, and lamina reads
theirs. The public key is a plain ``PUBLIC KEY`` PEM (PKIX), as ``cosign.pub``.

Passwords come from an environment variable (``LAMINA_KEY_PASSWORD``, else cosign's ``COSIGN_PASSWORD``)
or from standard input; they are never printed, logged or written anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lamina.supply.errors import KeyFileError

PRIVATE_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
LEGACY_PRIVATE_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"
PASSWORD_VARIABLES = ("LAMINA_KEY_PASSWORD", "COSIGN_PASSWORD")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1
_KEY_BYTES, _SALT_BYTES, _NONCE_BYTES = 32, 32, 24


@dataclass(frozen=True)
class PublicKey:
    """An ECDSA P-256 public key that checks signatures over SHA-256."""

    key: ec.EllipticCurvePublicKey

    @classmethod
    def load(cls, path: Path) -> PublicKey:
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except FileNotFoundError:
            raise KeyFileError(f"public key {path} does not exist", hint="give the .pub file `lamina keygen` wrote") from None
        except ValueError as e:
            raise KeyFileError(f"{path} is not a PEM public key ({e})", hint="give the .pub file, not the private key") from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise KeyFileError(f"{path} is not an ECDSA P-256 key", hint="cosign-compatible signatures use ECDSA P-256")
        return cls(key)

    def pem(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verifies(self, signature: bytes, data: bytes) -> bool:
        """True if ``signature`` (ASN.1 DER) signs ``data`` with this key."""
        try:
            self.key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class PrivateKey:
    """An ECDSA P-256 private key, decrypted in memory only."""

    key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key())

    def sign(self, data: bytes) -> bytes:
        """An ASN.1 DER ECDSA signature over SHA-256 of ``data`` (what cosign writes, base64'd).

        Deterministic (RFC 6979): the same key and data give the same bytes, so a signed attestation of
        an unchanged build is byte-identical and signing an image twice adds nothing."""
        return self.key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))

    def encrypted_pem(self, password: bytes) -> bytes:
        der = self.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        body = json.dumps(_seal(der, password), separators=(",", ":")).encode()
        return _pem(PRIVATE_PEM_TYPE, body)

    @classmethod
    def load(cls, path: Path, password: bytes) -> PrivateKey:
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            raise KeyFileError(f"private key {path} does not exist", hint="create one with `lamina keygen`") from None
        pem_type, body = _unpem(text, path)
        if pem_type not in (PRIVATE_PEM_TYPE, LEGACY_PRIVATE_PEM_TYPE):
            raise KeyFileError(
                f"{path} holds a {pem_type!r} PEM block, not an encrypted cosign/sigstore private key",
                hint="use a key written by `lamina keygen` or `cosign generate-key-pair`",
            )
        try:
            envelope = json.loads(body)
        except ValueError:
            raise KeyFileError(f"{path} is not a cosign private key (its body is not JSON)") from None
        der = _open(envelope, password, path)
        key = serialization.load_der_private_key(der, None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyFileError(f"{path} holds a {type(key).__name__}, not an ECDSA key", hint="lamina signs with ECDSA P-256")
        return cls(key)


def keygen(prefix: Path, password: bytes, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``PREFIX.key`` (encrypted, mode 0600) and ``PREFIX.pub``; returns their paths."""
    private, public = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    for path in (private, public):
        if path.exists() and not force:
            raise KeyFileError(f"{path} already exists", hint="choose another prefix, or pass --force to replace it")
    key = PrivateKey.generate()
    _write(private, key.encrypted_pem(password), 0o600)
    _write(public, key.public.pem(), 0o644)
    return private, public


def read_password(*, stdin: IO[str] | None = None, confirm: bool = False) -> bytes:
    """The key password: from LAMINA_KEY_PASSWORD or COSIGN_PASSWORD, else one line of standard input.

    An empty password is allowed (cosign allows it too) only when set explicitly in a variable.
    """
    for name in PASSWORD_VARIABLES:
        if name in os.environ:
            return os.environ[name].encode()
    stream = stdin if stdin is not None else sys.stdin
    if stream is None or stream.closed:
        raise KeyFileError("no key password", hint=f"set {PASSWORD_VARIABLES[0]} or pipe the password on standard input")
    if stream.isatty():
        import getpass

        password = getpass.getpass("key password: ")
        if confirm and getpass.getpass("again: ") != password:
            raise KeyFileError("the passwords differ")
    else:
        password = stream.readline().rstrip("\n")
    if not password:
        raise KeyFileError("empty key password on standard input",
                        hint=f"pipe the password in, or set {PASSWORD_VARIABLES[0]}")
    return password.encode()


# --- cosign's encrypted envelope -------------------------------------------------------------------


def _derive(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES, maxmem=256 * n * r + (1 << 20))


def _seal(plaintext: bytes, password: bytes) -> dict:
    from nacl.secret import SecretBox

    salt, nonce = secrets.token_bytes(_SALT_BYTES), secrets.token_bytes(_NONCE_BYTES)
    key = _derive(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    ciphertext = SecretBox(key).encrypt(plaintext, nonce).ciphertext
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return {
        "kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}, "salt": b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(ciphertext),
    }


def _open(envelope: dict, password: bytes, path: Path) -> bytes:
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    try:
        kdf, cipher = envelope["kdf"], envelope["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise KeyFileError(f"{path} uses {kdf['name']}/{cipher['name']}; lamina reads scrypt + nacl/secretbox keys")
        params = kdf["params"]
        key = _derive(password, base64.b64decode(kdf["salt"]), int(params["N"]), int(params["r"]), int(params["p"]))
        nonce, ciphertext = base64.b64decode(cipher["nonce"]), base64.b64decode(envelope["ciphertext"])
    except (KeyError, TypeError, ValueError) as e:
        raise KeyFileError(f"{path} is not a cosign private key (bad envelope: {e})") from None
    try:
        return SecretBox(key).decrypt(ciphertext, nonce)
    except CryptoError:
        raise KeyFileError(
            f"wrong password for {path}",
            hint=f"check {' or '.join(PASSWORD_VARIABLES)}, or what is piped on standard input",
        ) from None


def _pem(pem_type: str, body: bytes) -> bytes:
    text = base64.b64encode(body).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return "\n".join([f"-----BEGIN {pem_type}-----", *lines, f"-----END {pem_type}-----", ""]).encode()


def _unpem(data: bytes, path: Path) -> tuple[str, bytes]:
    lines = data.decode("ascii", "replace").strip().splitlines()
    if len(lines) < 2 or not lines[0].startswith("-----BEGIN ") or not lines[-1].startswith("-----END "):
        raise KeyFileError(f"{path} is not a PEM file", hint="give the .key file `lamina keygen` or cosign wrote")
    pem_type = lines[0][len("-----BEGIN ") :].rstrip("-")
    try:
        return pem_type, base64.b64decode("".join(lines[1:-1]))
    except ValueError:
        raise KeyFileError(f"{path} has a corrupt PEM body") from None


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
