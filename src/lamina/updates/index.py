"""Which versions of a Python distribution its package sources offer: the index (PEP 691 JSON, else the
PEP 503 HTML page), extra indexes and find-links (a folder of wheels or an HTML page of links).

Only versions with a wheel the target accepts count (lamina installs wheels only), and yanked files do not.
"""

from __future__ import annotations

import html.parser
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import httpx
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from lamina.errors import LaminaError
from lamina.oci.http import make_client
from lamina.python.resolve import Indexes

DEFAULT_INDEX = "https://pypi.org/simple"
PYPI_JSON = "https://pypi.org/pypi"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{SIMPLE_JSON}, text/html;q=0.1"


class IndexReadError(LaminaError):
    """An index or find-links location could not be read."""


class VersionSource:
    """The versions of distributions, for one command (pages are fetched once)."""

    def __init__(self, indexes: Indexes, *, client: httpx.Client | None = None) -> None:
        self.indexes = indexes
        self._client = client
        self._pages: dict[str, list[str]] = {}

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = make_client(timeout=30)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def versions(self, name: str, tags: Iterable[Tag] | None = None) -> list[Version]:
        """Every version of ``name`` with a wheel whose tags the target accepts (``tags``; any wheel when
        None), oldest first."""
        accepted = set(tags) if tags is not None else None
        wanted = canonicalize_name(name)
        found: set[Version] = set()
        for filename in self._files(wanted):
            try:
                dist, version, _, wheel_tags = parse_wheel_filename(filename)
            except (InvalidWheelFilename, InvalidVersion):
                continue
            if canonicalize_name(dist) != wanted:
                continue
            if accepted is None or accepted & set(wheel_tags):
                found.add(version)
        return sorted(found)

    @property
    def uses_pypi(self) -> bool:
        return not self.indexes.no_index and (self.indexes.index_url or DEFAULT_INDEX).rstrip("/") == DEFAULT_INDEX

    def vulnerabilities(self, name: str, version: str) -> list[dict[str, object]]:
        """The known vulnerabilities of ``name`` ``version`` (PyPI's JSON API, from the OSV database):
        each with its ``id`` and the versions it is ``fixed_in``. Empty when the index is not PyPI."""
        if not self.uses_pypi:
            return []
        url = f"{PYPI_JSON}/{canonicalize_name(name)}/{version}/json"
        try:
            response = self.client.get(url)
        except httpx.HTTPError as e:
            raise IndexReadError(f"cannot read {url}: {e}", hint="check the network, or run without --security-only") from None
        if response.status_code != 200:
            return []
        return list(json.loads(response.content).get("vulnerabilities") or [])

    def _files(self, name: str) -> list[str]:
        files: list[str] = []
        if not self.indexes.no_index:
            for index in [self.indexes.index_url or DEFAULT_INDEX, *self.indexes.extra_index_urls]:
                files += self._index_files(index, name)
        for link in self.indexes.find_links:
            files += self._find_links(link)
        return files

    def _index_files(self, index: str, name: str) -> list[str]:
        url = f"{index.rstrip('/')}/{name}/"
        if url in self._pages:
            return self._pages[url]
        if url.startswith("file:") or "://" not in url:
            self._pages[url] = _folder_files(Path(unquote(urlparse(url).path) if url.startswith("file:") else url))
            return self._pages[url]
        try:
            response = self.client.get(url, headers={"Accept": ACCEPT})
        except httpx.HTTPError as e:
            raise IndexReadError(f"cannot read the index page {url}: {e}",
                              hint="check [python] index_url and the network") from None
        if response.status_code == 404:
            self._pages[url] = []
            return []
        if response.status_code != 200:
            raise IndexReadError(f"the index page {url} answered {response.status_code}",
                              hint="check [python] index_url and its credentials")
        if response.headers.get("Content-Type", "").startswith(SIMPLE_JSON):
            data = json.loads(response.content)
            files = [f["filename"] for f in data.get("files", []) if not f.get("yanked")]
        else:
            files = [unquote(urlparse(href).path.rsplit("/", 1)[-1]) for href, yanked in _links(response.text)
                     if not yanked]
        self._pages[url] = files
        return files

    def _find_links(self, link: str) -> list[str]:
        if link in self._pages:
            return self._pages[link]
        if "://" not in link or link.startswith("file:"):
            path = Path(unquote(urlparse(link).path)) if link.startswith("file:") else Path(link)
            files = _folder_files(path)
        else:
            try:
                response = self.client.get(link)
                response.raise_for_status()
            except httpx.HTTPError as e:
                raise IndexReadError(f"cannot read the find-links page {link}: {e}",
                                  hint="check [python] find_links") from None
            files = [unquote(urlparse(urljoin(link, href)).path.rsplit("/", 1)[-1])
                     for href, yanked in _links(response.text) if not yanked]
        self._pages[link] = files
        return files


def _folder_files(path: Path) -> list[str]:
    if path.is_file():
        return [path.name]
    return sorted(p.name for p in path.glob("*.whl")) if path.is_dir() else []


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            values = dict(attrs)
            if values.get("href"):
                self.links.append((values["href"] or "", "data-yanked" in values))


def _links(text: str) -> Sequence[tuple[str, bool]]:
    parser = _Links()
    parser.feed(text)
    return parser.links
