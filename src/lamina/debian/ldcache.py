"""What ``ldconfig`` and ``update-alternatives`` would leave in an image, computed without running them.

* :func:`package_facts` — of one ``.deb``: its shared libraries (path, soname, machine), the library
  folders its ``/etc/ld.so.conf.d/*.conf`` add, and the alternatives its ``postinst`` installs with
  ``update-alternatives --install LINK NAME PATH PRIORITY [--slave LINK NAME PATH]...``.
* :func:`system_state_entries` — for all the packages of an image: the alternatives (highest priority
  wins, as in automatic mode: ``LINK → /etc/alternatives/NAME → PATH``) and ``/etc/ld.so.cache`` in
  glibc's format ``glibc-ld.so.cache1.1`` listing every soname found in the search folders (those of
  ``ld.so.conf.d``, then ``/lib/<triplet>``, ``/usr/lib/<triplet>``, ``/lib``, ``/usr/lib``), so that
  ``dlopen`` by soname and ``ctypes.util.find_library`` (which runs ``ldconfig -p``) work.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lamina.oci.tar import Entry

TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "armhf": "arm-linux-gnueabihf",
            "i386": "i386-linux-gnu", "ppc64el": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu"}
#: e_machine → the flags glibc's ldconfig writes for a libc6 library of that machine (dl-cache.h).
CACHE_FLAGS = {62: 0x0303, 183: 0x0A03, 3: 0x0003, 40: 0x0903, 21: 0x0503, 22: 0x0603}
CACHE_MAGIC = b"glibc-ld.so.cache" + b"1.1"
ENDIAN_LITTLE, ENDIAN_BIG = 2, 3
FACTS_FORMAT = 1
_ALTERNATIVE = re.compile(r"update-alternatives\b(.*?)(?:$|;|&&|\|\|)", re.S | re.M)


def read_soname(data: bytes) -> tuple[str, int] | None:
    """(DT_SONAME, e_machine) of an ELF shared object, or None (not ELF, no dynamic section, no soname)."""
    if len(data) < 64 or not data.startswith(b"\x7fELF"):
        return None
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    try:
        if is64:
            e_type, e_machine = struct.unpack_from(order + "HH", data, 16)
            e_phoff, = struct.unpack_from(order + "Q", data, 32)
            e_phentsize, e_phnum = struct.unpack_from(order + "HH", data, 54)
            ph_fmt, dyn_fmt = order + "IIQQQQQQ", order + "qQ"
        else:
            e_type, e_machine = struct.unpack_from(order + "HH", data, 16)
            e_phoff, = struct.unpack_from(order + "I", data, 28)
            e_phentsize, e_phnum = struct.unpack_from(order + "HH", data, 42)
            ph_fmt, dyn_fmt = order + "IIIIIIII", order + "iI"
        if e_type != 3:  # ET_DYN
            return None
        loads, dynamic = [], None
        for i in range(e_phnum):
            fields = struct.unpack_from(ph_fmt, data, e_phoff + i * e_phentsize)
            if is64:
                p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = fields[:6]
            else:
                p_type, p_offset, p_vaddr, _paddr, p_filesz = fields[:5]
            if p_type == 1:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == 2:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return None
        size = struct.calcsize(dyn_fmt)
        strtab = soname = None
        for off in range(dynamic[0], dynamic[0] + dynamic[1] - size + 1, size):
            tag, value = struct.unpack_from(dyn_fmt, data, off)
            if tag == 0:
                break
            if tag == 5:
                strtab = value
            elif tag == 14:
                soname = value
        if strtab is None or soname is None:
            return None
        base = next((o + strtab - v for v, o, n in loads if v <= strtab < v + n), None)
        if base is None:
            return None
        end = data.index(b"\0", base + soname)
        return data[base + soname:end].decode("utf-8", "replace"), e_machine
    except (struct.error, ValueError):
        return None


def package_facts(entries: Sequence[Entry], postinst: str) -> dict[str, Any]:
    """What one package contributes to the cache and the alternatives (JSON-able, stored by deb hash)."""
    files: dict[str, Any] = {}
    conf_dirs: list[tuple[str, list[str]]] = []
    for e in entries:
        name = posixpath.basename(e.path)
        if e.path.startswith("etc/ld.so.conf.d/") and e.path.endswith(".conf") and e.kind == "file":
            lines = (e.data or b"").decode("utf-8", "replace").splitlines()
            conf_dirs.append((name, [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]))
        if ".so" not in name or not e.path.startswith(("usr/lib", "lib")):
            continue
        if e.kind == "symlink":
            files[e.path] = {"link": e.target}
        elif e.kind == "file" and e.data is not None and (found := read_soname(e.data)):
            files[e.path] = {"soname": found[0], "machine": found[1]}
    alternatives = parse_alternatives(postinst)
    paths = {_canonical(e.path) for e in entries}
    targets = {_canonical(t) for a in alternatives for t in (a["path"], *(s["path"] for s in a["slaves"]))}
    return {"format": FACTS_FORMAT, "libraries": files, "conf": conf_dirs, "alternatives": alternatives,
            "present": sorted(targets & paths)}


def parse_alternatives(script: str) -> list[dict[str, Any]]:
    """The ``update-alternatives --install`` calls of a maintainer script with literal arguments
    (calls built from shell variables are left out: lamina does not run the script)."""
    text = script.replace("\\\n", " ")
    found = []
    for m in _ALTERNATIVE.finditer(text):
        try:
            words = shlex.split(m.group(1), comments=True)
        except ValueError:
            continue
        if "--install" not in words:
            continue
        args = words[words.index("--install") + 1:]
        if len(args) < 4 or any("$" in a for a in args[:4]) or not args[3].isdigit():
            continue
        link, name, path, priority = args[:4]
        slaves = []
        rest = args[4:]
        while len(rest) >= 4 and rest[0] == "--slave":
            if not any("$" in a for a in rest[1:4]):
                slaves.append({"link": rest[1], "name": rest[2], "path": rest[3]})
            rest = rest[4:]
        found.append({"link": link, "name": name, "path": path, "priority": int(priority), "slaves": slaves})
    return found


def _canonical(path: str) -> str:
    """Image path without the leading slash, merged-/usr (``lib/x`` → ``usr/lib/x``)."""
    path = posixpath.normpath("/" + path).lstrip("/")
    for top in ("lib", "bin", "sbin"):
        if path == top or path.startswith(top + "/"):
            return "usr/" + path
    return path


def system_state_entries(facts: Sequence[Mapping[str, Any]], arch: str,
                         existing: Iterable[str] = ()) -> list[Entry]:
    """``/etc/alternatives`` links and ``/etc/ld.so.cache`` for the image's packages (see the module
    docstring). ``existing`` are other paths the image has (to tell a dangling alternative)."""
    libraries: dict[str, Mapping[str, Any]] = {}
    confs: dict[str, list[str]] = {}
    alternatives: dict[str, Mapping[str, Any]] = {}
    for fact in facts:
        for path, info in fact["libraries"].items():
            libraries[_canonical(path)] = info
        for name, dirs in fact["conf"]:
            confs[name] = dirs
        for alt in fact["alternatives"]:
            best = alternatives.get(alt["name"])
            if best is None or (alt["priority"], alt["path"]) > (best["priority"], best["path"]):
                alternatives[alt["name"]] = alt
    known = set(libraries) | {_canonical(p) for p in existing} | {p for f in facts for p in f.get("present", ())}
    entries: list[Entry] = []
    for name, alt in sorted(alternatives.items()):
        if _canonical(alt["path"]) not in known:
            continue
        links = [(alt["link"], name, alt["path"]), *((s["link"], s["name"], s["path"]) for s in alt["slaves"])]
        for link, alt_name, path in links:
            if _canonical(path) not in known and (link, alt_name, path) != links[0]:
                continue
            entries.append(Entry.symlink(f"etc/alternatives/{alt_name}", path))
            entries.append(Entry.symlink(link.lstrip("/"), f"/etc/alternatives/{alt_name}"))
            libraries.setdefault(_canonical(link), {"link": f"/etc/alternatives/{alt_name}"})
            libraries.setdefault(f"etc/alternatives/{alt_name}", {"link": path})
    cache = ld_cache(libraries, search_dirs(confs, arch))
    entries.append(Entry.bytes("etc/ld.so.cache", cache))
    return entries


def search_dirs(confs: Mapping[str, Sequence[str]], arch: str) -> list[str]:
    """ldconfig's folders: those of ``/etc/ld.so.conf.d/*.conf`` (by file name), then the trusted ones."""
    triplet = TRIPLETS.get(arch, f"{arch}-linux-gnu")
    dirs = [d for name in sorted(confs) for d in confs[name] if d.startswith("/") and not d.startswith("include")]
    dirs += [f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib", "/usr/lib"]
    seen, out = set(), []
    for d in dirs:
        c = _canonical(d)
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def _resolve(libraries: Mapping[str, Mapping[str, Any]], path: str) -> Mapping[str, Any] | None:
    for _ in range(16):
        info = libraries.get(path)
        if info is None or "link" not in info:
            return info
        target = info["link"]
        path = _canonical(target if target.startswith("/") else posixpath.join(posixpath.dirname(path), target))
    return None


def ld_cache(libraries: Mapping[str, Mapping[str, Any]], dirs: Sequence[str]) -> bytes:
    """``/etc/ld.so.cache`` for the shared objects in ``dirs``: one entry per soname (first folder wins)."""
    found: dict[str, tuple[str, int]] = {}
    for directory in dirs:
        names = sorted(p for p in libraries if posixpath.dirname(p) == directory)
        for path in names:
            base = posixpath.basename(path)
            if not (base.startswith(("lib", "ld-")) and ".so" in base):
                continue
            info = _resolve(libraries, path)
            if info is None or "soname" not in info or info.get("machine") not in CACHE_FLAGS:
                continue
            soname = info["soname"]
            if soname == base or (base.endswith(".so") and base not in found):
                key = soname if soname == base else base
                found.setdefault(key, ("/" + path, CACHE_FLAGS[info["machine"]]))
    return cache_bytes(found)


def cache_bytes(entries: Mapping[str, tuple[str, int]]) -> bytes:
    """The file glibc reads: header, entries sorted as ``_dl_cache_libcmp`` searches them (descending),
    then the strings; offsets count from the start of the file (little-endian)."""
    keys = sorted(entries, key=_LibKey, reverse=True)
    header_size, entry_size = 48, 24
    strings = bytearray()
    offsets: dict[str, int] = {}
    start = header_size + entry_size * len(keys)
    for text in [s for k in keys for s in (k, entries[k][0])]:
        if text not in offsets:
            offsets[text] = start + len(strings)
            strings += text.encode() + b"\0"
    out = bytearray(CACHE_MAGIC)
    out += struct.pack("<IIB3xI3I", len(keys), len(strings), ENDIAN_LITTLE, 0, 0, 0, 0)
    for key in keys:
        path, flags = entries[key]
        out += struct.pack("<iIIIQ", flags, offsets[key], offsets[path], 0, 0)
    return bytes(out + strings)


class _LibKey:
    """Order of glibc's ``_dl_cache_libcmp``: digit runs compare as numbers and after other characters."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __lt__(self, other: _LibKey) -> bool:
        return libcmp(self.text, other.text) < 0


def libcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a):
        if j >= len(b):
            return 1
        ca, cb = a[i], b[j]
        if ca.isdigit():
            if not cb.isdigit():
                return 1
            si = i
            while i < len(a) and a[i].isdigit():
                i += 1
            sj = j
            while j < len(b) and b[j].isdigit():
                j += 1
            va, vb = int(a[si:i]), int(b[sj:j])
            if va != vb:
                return va - vb
        elif cb.isdigit():
            return -1
        elif ca != cb:
            return ord(ca) - ord(cb)
        else:
            i += 1
            j += 1
    return 0 if j >= len(b) else -1
