"""Image reference parsing follows Docker's rules."""

from __future__ import annotations

import pytest

from lamina.errors import LaminaError
from lamina.oci.reference import Reference

D = "sha256:" + "ab" * 32

PARSED = [
    # text, registry, repository, tag, digest, canonical
    ("python", "docker.io", "library/python", "latest", None, "docker.io/library/python:latest"),
    ("python:3.12-slim", "docker.io", "library/python", "3.12-slim", None, "docker.io/library/python:3.12-slim"),
    ("acme/app", "docker.io", "acme/app", "latest", None, "docker.io/acme/app:latest"),
    ("docker.io/python", "docker.io", "library/python", "latest", None, "docker.io/library/python:latest"),
    ("index.docker.io/acme/app:1", "docker.io", "acme/app", "1", None, "docker.io/acme/app:1"),
    ("localhost/x", "localhost", "x", "latest", None, "localhost/x:latest"),
    ("localhost:5000/x", "localhost:5000", "x", "latest", None, "localhost:5000/x:latest"),
    ("127.0.0.1:5000/a/b/c:v1.0", "127.0.0.1:5000", "a/b/c", "v1.0", None, "127.0.0.1:5000/a/b/c:v1.0"),
    ("ghcr.io/acme/app:1.2.3", "ghcr.io", "acme/app", "1.2.3", None, "ghcr.io/acme/app:1.2.3"),
    ("registry:5000/app", "registry:5000", "app", "latest", None, "registry:5000/app:latest"),
    ("[::1]:5000/app", "[::1]:5000", "app", "latest", None, "[::1]:5000/app:latest"),
    (f"ghcr.io/acme/app@{D}", "ghcr.io", "acme/app", None, D, f"ghcr.io/acme/app@{D}"),
    (f"python:3.12@{D}", "docker.io", "library/python", "3.12", D, f"docker.io/library/python:3.12@{D}"),
    ("my-org/my_app__x.y", "docker.io", "my-org/my_app__x.y", "latest", None, "docker.io/my-org/my_app__x.y:latest"),
]


@pytest.mark.parametrize("text, registry, repository, tag, digest, canonical", PARSED)
def test_parse(text: str, registry: str, repository: str, tag: str | None, digest: str | None, canonical: str) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert str(ref) == canonical
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("python 3", "whitespace"),
        ("Acme/app", "lowercase"),
        ("acme/App", "lowercase"),
        ("acme//app", "component"),
        ("acme/app:", "tag"),
        ("acme/app:-bad", "tag"),
        ("acme/app:" + "x" * 129, "tag"),
        ("acme/app@sha256:1234", "sha256"),
        ("acme/app@md5:" + "a" * 32, "sha256"),
        ("ghcr.io/", "empty"),
        ("bad_host.io:port/x", "registry"),
        ("-a.io/x", "registry"),
        ("acme/app-", "component"),
    ],
)
def test_invalid(text: str, fragment: str) -> None:
    with pytest.raises(LaminaError) as caught:
        Reference.parse(text)
    message = str(caught.value)
    assert "invalid image reference" in message
    assert fragment in message


def test_identifier_and_api_host() -> None:
    assert Reference.parse("python").identifier == "latest"
    assert Reference.parse(f"python:3@{D}").identifier == D
    assert Reference.parse("python").api_host == "registry-1.docker.io"
    assert Reference.parse("localhost:5000/x").api_host == "localhost:5000"


def test_with_tag_and_digest() -> None:
    ref = Reference.parse(f"ghcr.io/acme/app:1@{D}")
    assert str(ref.with_tag("2")) == "ghcr.io/acme/app:2"
    other = "sha256:" + "cd" * 32
    assert str(Reference.parse("ghcr.io/acme/app:1").with_digest(other)) == f"ghcr.io/acme/app:1@{other}"
    with pytest.raises(LaminaError):
        ref.with_tag("bad tag")
    with pytest.raises(LaminaError):
        ref.with_digest("sha256:nope")
