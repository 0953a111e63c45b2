"""A wheel checked before anything of it is installed: member paths, member kinds, RECORD against the files.

pypa ``installer`` is trusted for laying files out, not for safety (0.7.0 wrote ``../`` members onto the
host): lamina refuses, naming the wheel and the member,

* a member whose path is absolute, holds ``..`` (also below ``.data/<scheme>/``) or names an unknown
  ``.data`` scheme;
* a member that is a symlink, a device node, a FIFO or a socket, or carries setuid/setgid bits;
* a RECORD that does not match the files: a file missing from RECORD or without a hash, a hash or size
  that differs, an entry naming no file, a hash algorithm weaker than sha256.

An install reads each member once: :func:`check_wheel` with ``contents=False`` checks names, kinds and
RECORD's entries before anything is written, and :func:`check_written` then compares the hashes and sizes
installer computed while writing each file with RECORD's (a mismatch fails the install; its staging tree is
discarded). After installing, :func:`check_staged` checks that everything landed under the venv.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

from lamina.errors import UnsafePathError
from lamina.oci.paths import check_member_mode, member_path

SCHEMES = frozenset({"purelib", "platlib", "headers", "scripts", "data"})
#: RECORD files that list no hash of their own (RECORD itself and its signatures).
UNHASHED = (".dist-info/RECORD", ".dist-info/RECORD.jws", ".dist-info/RECORD.p7s")
STRONG_HASHES = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s"})


class WheelRecordError(UnsafePathError):
    """A wheel's RECORD does not describe its files."""


#: zip member name → (its hash and size as RECORD writes them), for every file RECORD hashes.
Listed = dict[str, tuple[str, str]]
#: A file as installer wrote it: (scheme, path in the scheme, hash algorithm, urlsafe-base64 hash, size).
Written = tuple[str, str, str, str, int]


def check_wheel(path: Path, filename: str, *, contents: bool = True) -> Listed:
    """Refuse ``path`` (a wheel named ``filename``) unless every member is safe and RECORD matches; returns
    RECORD's hashed entries. ``contents=False`` checks RECORD's entries but leaves the files' hashes and
    sizes to :func:`check_written` (an install compares them with what installer hashed while writing,
    instead of inflating every member twice)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = _check_members(zf.infolist(), filename)
            return _check_record(zf, names, filename, contents=contents)
    except zipfile.BadZipFile as e:
        raise UnsafePathError(f"{filename} is not a valid wheel (zip): {e}",
                              hint="the file is corrupt; run `lamina store verify --delete` and build again") from None


def check_written(path: Path, filename: str, listed: Listed, written: Iterable[Written], *, root_scheme: str,
                  data_dir: str) -> None:
    """Compare the files an install wrote with RECORD (``listed``, from :func:`check_wheel`). ``data_dir``
    (the wheel's ``NAME-VERSION.data``) maps RECORD's ``.data/<scheme>/`` entries to their scheme. Files
    whose written bytes are not the wheel's (scripts: installer rewrites a ``#!python`` line), files RECORD
    hashes with another algorithm, and files installer did not write (``__pycache__``) are checked against
    the wheel itself."""
    by_place = {(scheme, rel): (algorithm, value, size) for scheme, rel, algorithm, value, size in written}
    from_wheel = []
    for name, (hash_text, size_text) in listed.items():
        scheme, rel = root_scheme, name
        if name.startswith(data_dir + "/"):
            scheme, _, rel = name[len(data_dir) + 1:].partition("/")
        found = by_place.get((scheme, rel)) if scheme != "scripts" else None
        if found is None or found[0] != hash_text.partition("=")[0]:
            from_wheel.append(name)
        else:
            _compare(name, hash_text, size_text, found[1], found[2], filename)
    if from_wheel:
        with zipfile.ZipFile(path) as zf:
            for name in from_wheel:
                _check_hash(zf, zf.getinfo(name), name, *listed[name], filename)


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


def _check_record(zf: zipfile.ZipFile, names: dict[str, zipfile.ZipInfo], filename: str, *,
                  contents: bool) -> Listed:
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
    hashed: Listed = {}
    for name, info in names.items():
        if info.is_dir():
            continue
        if name not in listed:
            raise WheelRecordError(f"{filename}: member {name!r} is not listed in RECORD",
                                   hint="a wheel's RECORD lists every file it installs; the wheel was altered")
        hash_text, size_text = listed[name]
        if name.endswith(UNHASHED):
            continue
        _check_algorithm(name, hash_text, filename)
        hashed[info.filename] = (hash_text, size_text)
        if contents:
            _check_hash(zf, info, name, hash_text, size_text, filename)
    for name in listed:
        if name not in names:
            raise WheelRecordError(f"{filename}: RECORD lists {name!r}, which the wheel does not contain",
                                   hint="the wheel was altered after it was built")
    return hashed


def _check_algorithm(name: str, hash_text: str, filename: str) -> None:
    algorithm, _, expected = hash_text.partition("=")
    if not expected:
        raise WheelRecordError(f"{filename}: RECORD has no hash for {name!r}",
                               hint="every file but RECORD must be hashed; the wheel was altered")
    if algorithm not in STRONG_HASHES:
        raise WheelRecordError(f"{filename}: RECORD hashes {name!r} with {algorithm!r}",
                               hint="wheels must use sha256 or stronger (PEP 427)")


def _check_hash(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, hash_text: str, size_text: str,
                filename: str) -> None:
    digest = hashlib.new(hash_text.partition("=")[0])
    size = 0
    with zf.open(info) as member:
        while block := member.read(1 << 20):
            digest.update(block)
            size += len(block)
    _compare(name, hash_text, size_text, base64.urlsafe_b64encode(digest.digest()).decode(), size, filename)


def _compare(name: str, hash_text: str, size_text: str, actual: str, size: int, filename: str) -> None:
    """``actual`` (urlsafe base64) and ``size`` against RECORD's ``hash_text`` and ``size_text``."""
    expected = hash_text.partition("=")[2].rstrip("=")
    actual = actual.rstrip("=")
    # PEP 376 says urlsafe base64; a few wheels on PyPI (gmsh) write hex. Either way the bytes must match.
    if actual != expected and base64.urlsafe_b64decode(actual + "=" * (-len(actual) % 4)).hex() != expected.lower():
        raise WheelRecordError(f"{filename}: {name!r} does not match its RECORD hash",
                               hint="the wheel was altered after it was built; do not install it")
    if size_text and size_text.strip() != str(size):
        raise WheelRecordError(f"{filename}: {name!r} is {size} bytes, RECORD says {size_text}",
                               hint="the wheel was altered after it was built; do not install it")


def check_staged(staging: Path, venv: str, filename: str) -> None:
    """Everything the install wrote is under the venv, and nothing is a symlink leaving the staging tree.

    One ``scandir`` per folder and string comparisons (a torch install stages 13,000 entries; ``pathlib``
    and an ``lstat`` per entry took a fifth of its install time)."""
    allowed = venv.strip("/")
    folders = [(os.fspath(staging), "")]
    while folders:
        path, rel = folders.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                member = f"{rel}/{entry.name}" if rel else entry.name
                if not (member == allowed or member.startswith(allowed + "/") or allowed.startswith(member + "/")):
                    raise UnsafePathError(f"{filename}: installing wrote /{member}, outside the venv /{allowed}",
                                          hint="the wheel is hostile; nothing of it was kept")
                if entry.is_symlink():
                    raise UnsafePathError(f"{filename}: installing made a symlink /{member}",
                                          hint="wheels hold regular files only")
                if entry.is_dir(follow_symlinks=False):
                    folders.append((entry.path, member))
