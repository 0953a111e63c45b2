"""A wheel checked before anything of it is installed: member paths, member kinds, RECORD against the files.

pypa ``installer`` is trusted for laying files out, not for safety (0.7.0 wrote ``../`` members onto the
host): lamina refuses, naming the wheel and the member,

* a member whose path is absolute, holds ``..`` (also below ``.data/<scheme>/``) or names an unknown
  ``.data`` scheme;
* a member that is a symlink, a device node, a FIFO or a socket, or carries setuid/setgid bits;
* a RECORD that does not match the files: a file missing from RECORD or without a hash, a hash or size
  that differs, an entry naming no file, a hash algorithm weaker than sha256.

After installing, :func:`check_staged` checks that everything landed under the venv.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import zipfile
from pathlib import Path

from lamina.errors import UnsafePathError
from lamina.oci.paths import check_member_mode, member_path

SCHEMES = frozenset({"purelib", "platlib", "headers", "scripts", "data"})
#: RECORD files that list no hash of their own (RECORD itself and its signatures).
UNHASHED = (".dist-info/RECORD", ".dist-info/RECORD.jws", ".dist-info/RECORD.p7s")
STRONG_HASHES = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s"})


class WheelRecordError(UnsafePathError):
    """A wheel's RECORD does not describe its files."""


def check_wheel(path: Path, filename: str) -> None:
    """Refuse ``path`` (a wheel named ``filename``) unless every member is safe and RECORD matches."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = _check_members(infos, filename)
            _check_record(zf, infos, names, filename)
    except zipfile.BadZipFile as e:
        raise UnsafePathError(f"{filename} is not a valid wheel (zip): {e}",
                              hint="the file is corrupt; run `lamina store verify --delete` and build again") from None


def _check_members(infos: list[zipfile.ZipInfo], filename: str) -> dict[str, zipfile.ZipInfo]:
    names: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = member_path(info.filename, source=filename)
        parts = name.split("/")
        if parts[0].endswith(".data") and len(parts) > 1 and parts[1] not in SCHEMES:
            raise UnsafePathError(f"{filename}: member {info.filename!r} is in an unknown .data scheme {parts[1]!r}",
                                  hint=f"wheels install into {', '.join(sorted(SCHEMES))} only")
        if parts[0].endswith(".data") and len(parts) == 2 and not info.is_dir():
            raise UnsafePathError(f"{filename}: member {info.filename!r} is a file where a scheme directory belongs")
        mode = info.external_attr >> 16
        if info.create_system == 3 and mode:  # made on Unix: the high bits are a st_mode
            check_member_mode(mode, info.filename, source=filename)
        if name in names and not info.is_dir():
            raise UnsafePathError(f"{filename}: member {info.filename!r} appears twice",
                                  hint="the wheel is broken or hostile")
        names[name] = info
    return names


def _check_record(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], names: dict[str, zipfile.ZipInfo],
                  filename: str) -> None:
    records = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/RECORD")]
    if len(records) != 1:
        raise WheelRecordError(f"{filename}: expected one .dist-info/RECORD, found {len(records)}",
                               hint="the wheel is broken; rebuild it or pick another release")
    rows = list(csv.reader(io.StringIO(zf.read(names[records[0]]).decode("utf-8", "replace"))))
    listed: dict[str, tuple[str, str]] = {}
    for row in rows:
        if not row or not row[0]:
            continue
        if row[0].endswith("/"):
            continue  # a directory listed by some tools: nothing to check
        name = member_path(row[0], source=f"{filename} RECORD", what="entry")
        listed[name] = (row[1] if len(row) > 1 else "", row[2] if len(row) > 2 else "")
    for name, info in names.items():
        if info.is_dir():
            continue
        if name not in listed:
            raise WheelRecordError(f"{filename}: member {name!r} is not listed in RECORD",
                                   hint="a wheel's RECORD lists every file it installs; the wheel was altered")
        hash_text, size_text = listed[name]
        if name.endswith(UNHASHED):
            continue
        _check_hash(zf, info, name, hash_text, size_text, filename)
    for name in listed:
        if name not in names:
            raise WheelRecordError(f"{filename}: RECORD lists {name!r}, which the wheel does not contain",
                                   hint="the wheel was altered after it was built")


def _check_hash(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, hash_text: str, size_text: str,
                filename: str) -> None:
    algorithm, _, expected = hash_text.partition("=")
    if not expected:
        raise WheelRecordError(f"{filename}: RECORD has no hash for {name!r}",
                               hint="every file but RECORD must be hashed; the wheel was altered")
    if algorithm not in STRONG_HASHES:
        raise WheelRecordError(f"{filename}: RECORD hashes {name!r} with {algorithm!r}",
                               hint="wheels must use sha256 or stronger (PEP 427)")
    digest = hashlib.new(algorithm)
    size = 0
    with zf.open(info) as member:
        while block := member.read(1 << 20):
            digest.update(block)
            size += len(block)
    actual = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
    # PEP 376 says urlsafe base64; a few wheels on PyPI (gmsh) write hex. Either way the bytes must match.
    if actual != expected.rstrip("=") and digest.hexdigest() != expected.lower():
        raise WheelRecordError(f"{filename}: {name!r} does not match its RECORD hash",
                               hint="the wheel was altered after it was built; do not install it")
    if size_text and size_text.strip() != str(size):
        raise WheelRecordError(f"{filename}: {name!r} is {size} bytes, RECORD says {size_text}",
                               hint="the wheel was altered after it was built; do not install it")


def check_staged(staging: Path, venv: str, filename: str) -> None:
    """Everything the install wrote is under the venv, and nothing is a symlink leaving the staging tree."""
    allowed = Path(venv.strip("/"))
    for dirpath, dirnames, filenames in os.walk(staging):
        rel = Path(dirpath).relative_to(staging)
        for name in [*dirnames, *filenames]:
            member = rel / name
            if not (allowed == member or allowed in member.parents or member in allowed.parents):
                raise UnsafePathError(f"{filename}: installing wrote /{member}, outside the venv /{allowed}",
                                      hint="the wheel is hostile; nothing of it was kept")
            if os.path.islink(staging / member):
                raise UnsafePathError(f"{filename}: installing made a symlink /{member}",
                                      hint="wheels hold regular files only")
