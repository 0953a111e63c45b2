"""The Debian resolver on small synthetic archives (no network)."""

from __future__ import annotations

import pytest

from lamina.debian.archive import Candidate
from lamina.debian.resolve import Index, Installed, ResolutionError, resolve


def pkg(name: str, version: str = "1.0", *, depends: str = "", pre: str = "", provides: str = "", arch: str = "amd64",
        priority: str = "optional", suite: str = "bookworm") -> Candidate:
    return Candidate(name, version, arch, pre, depends, provides, priority, f"pool/{name}_{version}_{arch}.deb",
                     f"{abs(hash((name, version))):064x}"[:64], 1000, suite)


def names(result) -> list[str]:
    return [c.name for c in result.packages]


def versions(result) -> dict[str, str]:
    return {c.name: c.version for c in result.packages}


def test_dependencies_and_pre_depends_are_followed_breadth_first():
    index = Index([
        pkg("app", depends="liba, libb (>= 2)", pre="init"),
        pkg("liba", depends="libc6"),
        pkg("libb", "2.1", depends="libc6 (>= 2.36)"),
        pkg("init"),
        pkg("libc6", "2.36-9"),
        pkg("unrelated"),
    ], "amd64")
    result = resolve(["app"], index)
    assert names(result) == ["app", "init", "liba", "libb", "libc6"]
    assert result.reasons["libc6"] == ("app 1.0", "liba 1.0")


def test_highest_version_wins_across_suites_and_version_relations_are_honoured():
    index = Index([
        pkg("libssl3", "3.0.11-1~deb12u2"),
        pkg("libssl3", "3.0.15-1~deb12u1", suite="bookworm-security"),
        pkg("old", "1:0.9"),
        pkg("old", "2.0"),
        pkg("needs-old", depends="old (<< 1:0)"),
    ], "amd64")
    result = resolve(["libssl3", "needs-old"], index)
    assert versions(result)["libssl3"] == "3.0.15-1~deb12u1"
    assert [c.suite for c in result.packages if c.name == "libssl3"] == ["bookworm-security"]
    assert versions(result)["old"] == "2.0"  # the epoch makes 1:0.9 the newest, but << 1:0 rules it out


def test_first_satisfiable_alternative_wins_and_a_satisfied_one_is_kept():
    index = Index([
        pkg("a", depends="missing | second | third"),
        pkg("second"),
        pkg("third"),
        pkg("b", depends="third | second"),
    ], "amd64")
    assert names(resolve(["a", "b"], index)) == ["a", "b", "second"]  # b's alternative is already there
    assert names(resolve(["b"], index)) == ["b", "third"]


def test_virtual_packages_resolve_through_provides_by_priority_then_name():
    index = Index([
        pkg("base-files", pre="awk"),
        pkg("mawk", provides="awk", priority="required"),
        pkg("gawk", provides="awk", priority="optional"),
        pkg("original-awk", provides="awk", priority="extra"),
        pkg("tool", depends="debconf (>= 0.5) | debconf-2.0"),
        pkg("cdebconf", provides="debconf-2.0"),
    ], "amd64")
    result = resolve(["base-files", "tool"], index)
    assert names(result) == ["base-files", "cdebconf", "mawk", "tool"]


def test_versioned_relation_needs_a_versioned_provides():
    index = Index([
        pkg("x", depends="libfoo1 (>= 2)"),
        pkg("unversioned", provides="libfoo1"),
        pkg("versioned", provides="libfoo1 (= 2.5)"),
    ], "amd64")
    assert names(resolve(["x"], index)) == ["versioned", "x"]


def test_arch_all_and_any_qualifiers():
    index = Index([
        pkg("python3-six", arch="all", depends="python3:any"),
        pkg("python3", "3.11.2-1+b1", depends="python3.11 (>= 3.11.2-1~)"),
        pkg("python3.11", "3.11.2-6"),
        pkg("arm-only", arch="arm64"),
    ], "amd64")
    assert names(resolve(["python3-six"], index)) == ["python3", "python3-six", "python3.11"]
    with pytest.raises(ResolutionError, match="unknown package 'arm-only'"):
        resolve(["arm-only"], index)


def test_cycles_terminate():
    index = Index([pkg("a", depends="b"), pkg("b", depends="c"), pkg("c", depends="a, b")], "amd64")
    assert names(resolve(["a"], index)) == ["a", "b", "c"]


def test_packages_the_base_has_are_not_added_again_unless_too_old():
    index = Index([
        pkg("tesseract-ocr", depends="libc6 (>= 2.34), libtesseract5, zlib1g"),
        pkg("libtesseract5", depends="libc6 (>= 2.38)"),
        pkg("libc6", "2.38-1"),
        pkg("zlib1g", "1:1.2.13"),
    ], "amd64")
    installed = {"libc6": Installed("libc6", "2.36-9", "amd64"), "zlib1g": Installed("zlib1g", "1:1.2.13", "amd64")}
    result = resolve(["tesseract-ocr"], index, installed)
    assert names(result) == ["libc6", "libtesseract5", "tesseract-ocr"]  # zlib1g skipped, libc6 upgraded
    assert result.upgrades == {"libc6": "2.36-9"}
    installed["libc6"] = Installed("libc6", "2.38-1", "amd64")
    assert names(resolve(["tesseract-ocr"], index, installed)) == ["libtesseract5", "tesseract-ocr"]


def test_provides_of_the_base_count():
    index = Index([pkg("tool", depends="debconf (>= 0.5) | debconf-2.0"), pkg("debconf", "1.5")], "amd64")
    installed = {"cdebconf": Installed("cdebconf", "0.2", "amd64", provides="debconf-2.0")}
    assert names(resolve(["tool"], index, installed)) == ["tool"]


def test_resolution_is_deterministic_whatever_the_index_order():
    packages = [pkg("a", depends="x | y, z"), pkg("y"), pkg("x", depends="z"), pkg("z", "1"), pkg("z", "2"),
                pkg("w", provides="x")]
    one = resolve(["a"], Index(packages, "amd64"))
    two = resolve(["a"], Index(list(reversed(packages)), "amd64"))
    assert [(c.name, c.version) for c in one.packages] == [(c.name, c.version) for c in two.packages]


def test_unknown_package_suggests_close_names():
    index = Index([pkg("python3"), pkg("python3-pip"), pkg("poppler-utils")], "amd64")
    with pytest.raises(ResolutionError) as info:
        resolve(["pyhton3"], index, release="bookworm")
    assert "unknown package 'pyhton3': it is not in bookworm (amd64)" in info.value.message
    assert "python3" in (info.value.hint or "")


def test_unsatisfiable_dependency_shows_the_chain():
    index = Index([
        pkg("tesseract-ocr", "5.3.0", depends="libtesseract5 (>= 5.3.0)"),
        pkg("libtesseract5", "5.3.0", depends="liblept5 (>= 1.84)"),
        pkg("liblept5", "1.82.0"),
    ], "amd64")
    with pytest.raises(ResolutionError) as info:
        resolve(["tesseract-ocr"], index, release="bookworm")
    message = info.value.message
    assert "cannot satisfy 'liblept5 (>= 1.84)'" in message
    assert "tesseract-ocr 5.3.0 → libtesseract5 5.3.0" in message
    assert "liblept5 has only 1.82.0" in message


def test_a_conflicting_exact_version_names_both_chains():
    index = Index([
        pkg("top", depends="libx (= 1), mid"),
        pkg("mid", depends="libx (= 2)"),
        pkg("libx", "1"),
        pkg("libx", "2"),
    ], "amd64")
    with pytest.raises(ResolutionError, match=r"libx 1 was already chosen for top 1.0"):
        resolve(["top"], index)


def test_requests_may_carry_versions():
    index = Index([pkg("libc6", "2.36"), pkg("libc6", "2.40")], "amd64")
    assert versions(resolve(["libc6 (<< 2.40)"], index)) == {"libc6": "2.36"}
    with pytest.raises(ResolutionError, match="libc6 has only 2.40, 2.36"):
        resolve(["libc6 (>= 3)"], index)
