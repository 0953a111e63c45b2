"""What went into an image: every package and file set a step installed, and the layer that holds it.

Each build step (Debian packages, Python distributions, files and app code) returns the components it
put into each of its layers. Once the layers are built, the family places them: every component gets
the digest and diff_id of its layer and the name of the image that added it. An image's inventory is
its base's plus its own, recorded in the store under the image's manifest digest, so SBOMs, reports
and ``lamina verify`` read exactly what was built (never a guess from the files).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

Kind = Literal["deb", "python", "files"]
KINDS: tuple[Kind, ...] = ("deb", "python", "files")
#: The store's record kind for inventories (keyed by manifest digest).
RECORD_KIND = "inventory"
FORMAT = 1


@dataclass(frozen=True)
class Component:
    """One thing a step installed.

    - ``deb``: a Debian package (``arch`` its Architecture, ``sha256``/``size`` of the ``.deb``,
      ``filename`` its pool path, ``source_package`` Debian's Source, ``url`` the archive it came from);
    - ``python``: a distribution (``sha256``/``size``/``filename`` of the wheel, ``url`` where it was fetched);
    - ``files``: first-party code or copied files (``name`` what it is, e.g. ``svc-forms code``,
      ``filename`` the project path, ``version`` empty).

    ``origin`` says why it is there: ``libs/requirements-ml.txt:3``, ``a dependency``, ``lamina.toml``.
    """

    kind: Kind
    name: str
    version: str = ""
    arch: str = ""
    sha256: str = ""
    size: int = 0
    filename: str = ""
    url: str = ""
    source_package: str = ""
    origin: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    def to_json(self) -> dict[str, Any]:
        # the fields by hand, not dataclasses.asdict: a family's inventories hold thousands of these, and
        # asdict deep-copies every value
        return {k: v for k in _COMPONENT_FIELDS if (v := getattr(self, k)) not in ("", 0)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Component:
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        return cls(**known)


_COMPONENT_FIELDS = tuple(f.name for f in fields(Component))


@dataclass(frozen=True)
class Placed:
    """A component in a built layer: ``layer`` is the layer's digest, ``added_by`` the image that added it."""

    component: Component
    layer: str = ""
    diff_id: str = ""
    added_by: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**self.component.to_json(), "layer": self.layer, "diff_id": self.diff_id, "added_by": self.added_by}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Placed:
        return cls(Component.from_json(data), str(data.get("layer", "")), str(data.get("diff_id", "")),
                   str(data.get("added_by", "")))


@dataclass(frozen=True)
class Inventory:
    """Everything in one platform image, bottom layer first.

    ``base`` and ``base_digest`` name the image it was built on (empty for an image made from nothing,
    such as a ``debian:`` base); ``digest`` is the image's own manifest digest once built.
    """

    image: str
    platform: str
    items: tuple[Placed, ...] = ()
    base: str = ""
    base_digest: str = ""
    digest: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def of_kind(self, kind: Kind) -> list[Placed]:
        return [p for p in self.items if p.component.kind == kind]

    def added(self) -> list[Placed]:
        """What this image added on top of its base."""
        return [p for p in self.items if p.added_by == self.image]

    def by_layer(self) -> dict[str, list[Placed]]:
        out: dict[str, list[Placed]] = {}
        for p in self.items:
            out.setdefault(p.layer, []).append(p)
        return out

    def on(self, base: Inventory | None, own: Iterable[Placed]) -> Inventory:
        """This image's inventory: ``base``'s items, then ``own`` (a component of the same kind and
        name replaces the base's: it is installed again on top)."""
        own = list(own)
        replaced = {p.component.key for p in own}
        inherited = [p for p in (base.items if base else ()) if p.component.key not in replaced]
        return replace(self, items=tuple(inherited + own))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "image": self.image,
            "platform": self.platform,
            "digest": self.digest,
            "base": self.base,
            "base_digest": self.base_digest,
            "extra": dict(sorted(self.extra.items())),
            "items": [p.to_json() for p in self.items],
        }

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Inventory:
        return cls(
            image=str(data["image"]),
            platform=str(data["platform"]),
            items=tuple(Placed.from_json(p) for p in data.get("items", [])),
            base=str(data.get("base", "")),
            base_digest=str(data.get("base_digest", "")),
            digest=str(data.get("digest", "")),
            extra={str(k): str(v) for k, v in (data.get("extra") or {}).items()},
        )


def describe_component(c: Component) -> str:
    """``python numpy 2.1.0 (numpy-2.1.0-cp311-….whl)``, ``deb libc6 2.36-9 (amd64)``, ``files svc-forms …``."""
    if c.kind == "files":
        return c.name
    detail = c.filename.rsplit("/", 1)[-1] if c.kind == "python" else c.arch
    return f"{c.kind} {c.name} {c.version}" + (f" ({detail})" if detail else "")


def placed(components: Iterable[Component], *, layer: str, diff_id: str, added_by: str) -> list[Placed]:
    return [Placed(c, layer, diff_id, added_by) for c in components]


def save_inventory(store: Any, inventory: Inventory) -> None:
    """Record ``inventory`` in ``store`` (a :class:`lamina.oci.store.BlobStore`) under its image digest."""
    store.put_key(RECORD_KIND, inventory.digest, inventory.to_json())


def load_inventory(store: Any, digest: str) -> Inventory | None:
    """The inventory recorded for the image with manifest ``digest``, if this store built it."""
    record = store.get_key(RECORD_KIND, digest)
    return Inventory.from_json(record) if record else None
