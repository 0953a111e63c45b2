"""The files step: an image's own files (``copy`` entries, a service's code and shipped folders) and
symbolic links, one layer per copy so that a change to one source rebuilds only its layer."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from lamina.config import CopySpec, ImageSpec
from lamina.inventory import Component
from lamina.oci.layer import LayerSpec
from lamina.oci.paths import lexically_inside, project_path
from lamina.oci.tar import Entry, tree_entries
from lamina.steps import StepContext, StepLayer, StepResult

KIND = "files"


def copy_layer(copy: CopySpec, project_root: str | None = None) -> LayerSpec:
    """One layer per copy: a change to one source rebuilds only its layer.

    A source in the project is checked again when it is read (a symlink swapped in since the config was
    read must not take it outside); symlinks inside a copied folder are kept as links, never followed.
    """

    def entries() -> list[Entry]:
        if project_root and lexically_inside(copy.src, Path(project_root)):
            project_path(copy.src, Path(project_root), what=f"copy to {copy.dest}")
        return tree_entries(copy.src, copy.dest, uid=copy.uid, gid=copy.gid, mode=copy.mode, exclude=copy.exclude)

    identity = f"copy\0{copy.src}\0{copy.dest}\0{copy.uid}:{copy.gid}\0{copy.mode}\0{sorted(copy.exclude)}"
    return LayerSpec(entries, f"copy {copy.src.name} → {copy.dest}", identity=identity)


def symlink_layer(links: Mapping[str, str]) -> LayerSpec:
    """One layer with the image's declared symbolic links (path → target)."""
    return LayerSpec(lambda: [Entry.symlink(path, target) for path, target in links.items()], "symlinks")


class FilesStep:
    """Copies and links: first-party code, recorded in the inventory by project path."""

    kind = KIND

    def __init__(self, project_root: str | None = None) -> None:
        self.project_root = project_root

    def applies(self, spec: ImageSpec) -> bool:
        return bool(spec.copies or spec.symlinks)

    def run(self, ctx: StepContext) -> StepResult:
        result = StepResult(self.kind)
        if not ctx.fetch:
            return result
        for copy in ctx.spec.copies:
            result.layers.append(StepLayer(copy_layer(copy, self.project_root), (self._component(ctx.spec, copy),)))
        if ctx.spec.symlinks:
            result.layers.append(StepLayer(symlink_layer(ctx.spec.symlinks),
                                           (Component("files", "symlinks", origin=ctx.spec.name),)))
        return result

    def _component(self, spec: ImageSpec, copy: CopySpec) -> Component:
        path = copy.src.as_posix()
        if self.project_root and path.startswith(self.project_root.rstrip("/") + "/"):
            path = path[len(self.project_root.rstrip("/")) + 1:]
        return Component("files", f"copy {path} → {copy.dest}", filename=path, origin=spec.name)

    def close(self) -> None:
        pass
