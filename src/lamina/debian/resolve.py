"""Choosing the packages to install: ``Depends``/``Pre-Depends`` with alternatives, versions and ``Provides``.

The rules (deterministic: the same archive and request give the same answer):

* a relation already satisfied by the base (its dpkg database) or by a package chosen earlier adds nothing;
* otherwise its alternatives are tried in order, and the first one the archive can satisfy wins;
* for a name, the highest version that meets the version relation wins (across all suites:
  ``bookworm-security`` beats ``bookworm`` when it is newer);
* a name no package has is a virtual package: its providers (``Provides``, with a version when the
  relation has one) are ordered by priority (required, important, standard, optional, extra), then name;
* ``:any``/``:native`` qualifiers are dropped (one architecture per image; ``all`` packages count as ours);
* the requested names and then the dependencies are processed breadth-first, in the order written;
* ``Recommends``, ``Suggests``, ``Conflicts`` and ``Breaks`` are not considered (``apt-get install
  --no-install-recommends`` minus conflict checking).

A failure names the chain of packages that led to the relation that cannot be met.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cmp_to_key, lru_cache


from lamina.debian.archive import Candidate
from lamina.errors import LaminaError

PRIORITY_ORDER = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}


class ResolutionError(LaminaError):
    """A requested package is unknown, or a dependency cannot be satisfied."""


@dataclass(frozen=True)
class Installed:
    """A package the base image already has (from its dpkg database)."""

    name: str
    version: str
    arch: str = ""
    provides: str = ""


@dataclass(frozen=True)
class Relation:
    name: str
    op: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.name} ({self.op} {self.version})" if self.op else self.name


@lru_cache(maxsize=65536)
def parse_relations(text: str) -> tuple[tuple[Relation, ...], ...]:
    """``a (>= 1) | b, c`` → ((a>=1, b), (c,)), with arch qualifiers dropped."""
    if not text.strip():
        return ()
    groups = []
    from debian.deb822 import PkgRelation  # imported when resolving: slow to import

    for group in PkgRelation.parse_relations(text):
        alts = []
        for rel in group:
            op, ver = rel.get("version") or (None, None)
            alts.append(Relation(rel["name"], op, ver))
        if alts:
            groups.append(tuple(alts))
    return tuple(groups)


def version_compare(a: str, b: str) -> int:
    """Debian's version ordering (python-debian's, imported on first use)."""
    from debian.debian_support import version_compare as compare

    return compare(a, b)


def satisfies(version: str, op: str | None, wanted: str | None) -> bool:
    if op is None or wanted is None:
        return True
    c = version_compare(version, wanted)
    return {"<<": c < 0, "<=": c <= 0, "=": c == 0, ">=": c >= 0, ">>": c > 0, "<": c <= 0, ">": c >= 0}[op]


class Index:
    """The packages of one architecture (and ``all``) across the suites of a release."""

    def __init__(self, candidates: Iterable[Candidate], arch: str) -> None:
        self.arch = arch
        by_name: dict[str, list[Candidate]] = {}
        for c in candidates:
            if c.arch in (arch, "all"):
                by_name.setdefault(c.name, []).append(c)
        newest_first = cmp_to_key(lambda a, b: version_compare(b.version, a.version))
        self.by_name = {name: sorted(cs, key=newest_first) for name, cs in by_name.items()}
        self._providers: dict[str, list[tuple[Candidate, Relation]]] | None = None

    def providers(self, name: str) -> list[tuple[Candidate, Relation]]:
        if self._providers is None:
            table: dict[str, list[tuple[Candidate, Relation]]] = {}
            for cs in self.by_name.values():
                for c in cs:
                    for group in parse_relations(c.provides):
                        for rel in group:
                            table.setdefault(rel.name, []).append((c, rel))
            for entries in table.values():
                entries.sort(key=lambda e: (PRIORITY_ORDER.get(e[0].priority, 5), e[0].name))
            self._providers = table
        return self._providers.get(name, [])

    def names(self) -> list[str]:
        return list(self.by_name)


@dataclass
class Resolution:
    """The packages to add (sorted by name) and why each was chosen (the chain that pulled it in)."""

    packages: list[Candidate]
    reasons: dict[str, tuple[str, ...]] = field(default_factory=dict)
    upgrades: dict[str, str] = field(default_factory=dict)


def resolve(requested: Sequence[str], index: Index, installed: Mapping[str, Installed] | None = None,
            *, release: str = "the archive") -> Resolution:
    """The packages to add so that every ``requested`` relation and all their dependencies hold."""
    return _Resolver(index, installed or {}, release).run(requested)


class _Resolver:
    def __init__(self, index: Index, installed: Mapping[str, Installed], release: str) -> None:
        self.index = index
        self.installed = installed
        self.release = release
        self.chosen: dict[str, Candidate] = {}
        self.reasons: dict[str, tuple[str, ...]] = {}
        self.upgrades: dict[str, str] = {}
        self._installed_provides: dict[str, list[tuple[Installed, Relation]]] = {}
        for pkg in installed.values():
            for group in parse_relations(pkg.provides):
                for rel in group:
                    self._installed_provides.setdefault(rel.name, []).append((pkg, rel))

    def run(self, requested: Sequence[str]) -> Resolution:
        queue: deque[tuple[tuple[Relation, ...], tuple[str, ...]]] = deque()
        for text in requested:
            try:
                groups = parse_relations(text)
            except Exception:
                raise ResolutionError(f"cannot read the package request {text!r}",
                                      hint="write a name, optionally with a version: \"python3\", \"libc6 (>= 2.36)\"") from None
            queue.extend((group, ()) for group in groups)
        while queue:
            group, chain = queue.popleft()
            if any(self.satisfied(rel) for rel in group):
                continue
            for rel in group:
                candidate = self.best(rel, chain)
                if candidate is not None:
                    self.choose(candidate, chain, queue)
                    break
            else:
                raise self.failure(group, chain)
        packages = sorted(self.chosen.values(), key=lambda c: c.name)
        return Resolution(packages, dict(self.reasons), dict(self.upgrades))

    # what is already there ---------------------------------------------------------------------

    def satisfied(self, rel: Relation) -> bool:
        chosen = self.chosen.get(rel.name)
        if chosen is not None and satisfies(chosen.version, rel.op, rel.version):
            return True
        have = self.installed.get(rel.name)
        if chosen is None and have is not None and satisfies(have.version, rel.op, rel.version):
            return True
        for c in self.chosen.values():
            if _provides(c.provides, rel):
                return True
        return any(_provided(prov, rel) for _pkg, prov in self._installed_provides.get(rel.name, ()))

    # choosing ----------------------------------------------------------------------------------

    def best(self, rel: Relation, chain: tuple[str, ...]) -> Candidate | None:
        if rel.name not in self.chosen:  # chosen at a version that does not satisfy rel: no second version
            for c in self.index.by_name.get(rel.name, []):
                if satisfies(c.version, rel.op, rel.version):
                    return c
        for c, prov in self.index.providers(rel.name):
            if _provided(prov, rel) and (c.name not in self.chosen or self.chosen[c.name] == c):
                return c
        return None

    def choose(self, c: Candidate, chain: tuple[str, ...], queue: deque) -> None:
        if c.name in self.chosen:
            return
        if c.name in self.installed:
            self.upgrades[c.name] = self.installed[c.name].version
        self.chosen[c.name] = c
        self.reasons[c.name] = chain
        link = (*chain, f"{c.name} {c.version}")
        for group in parse_relations(c.pre_depends) + parse_relations(c.depends):
            queue.append((group, link))

    # failing well ------------------------------------------------------------------------------

    def failure(self, group: tuple[Relation, ...], chain: tuple[str, ...]) -> ResolutionError:
        where = f"{self.release} ({self.index.arch})"
        if not chain and len(group) == 1 and group[0].name not in self.index.by_name \
                and not self.index.providers(group[0].name):
            name = group[0].name
            close = difflib.get_close_matches(name, self.index.names(), n=3, cutoff=0.75)
            hint = f"did you mean {', '.join(close)}?" if close else (
                "check the name at https://packages.debian.org (it may not be built for this architecture, "
                "or live outside `main`)")
            return ResolutionError(f"unknown package {name!r}: it is not in {where}", hint=hint)
        reasons = []
        for rel in group:
            versions = [c.version for c in self.index.by_name.get(rel.name, [])]
            have = self.installed.get(rel.name)
            if rel.name in self.chosen:
                earlier = _chain_text(self.reasons[rel.name]) or "the request"
                reasons.append(f"{rel.name} {self.chosen[rel.name].version} was already chosen for {earlier}")
            elif versions:
                reasons.append(f"{rel.name} has only {', '.join(versions)}")
            elif have is not None:
                reasons.append(f"the base has {rel.name} {have.version}")
            else:
                reasons.append(f"no package is or provides {rel.name}")
        wanted = " | ".join(str(r) for r in group)
        return ResolutionError(
            f"cannot satisfy {wanted!r} in {where}, needed by {_chain_text(chain) or 'the request'}: {'; '.join(reasons)}",
            hint="the chain shows why it is needed; pick other packages, or another release",
        )


def _provides(provides: str, rel: Relation) -> bool:
    return any(p.name == rel.name and _provided(p, rel) for group in parse_relations(provides) for p in group)


def _provided(prov: Relation, rel: Relation) -> bool:
    """Does ``Provides: prov`` satisfy ``rel``? An unversioned Provides satisfies only unversioned relations."""
    if rel.op is None:
        return True
    return prov.op == "=" and prov.version is not None and satisfies(prov.version, rel.op, rel.version)


def _chain_text(chain: Sequence[str], rel: Relation | None = None) -> str:
    parts = list(chain) + ([str(rel)] if rel is not None else [])
    return " → ".join(parts)
