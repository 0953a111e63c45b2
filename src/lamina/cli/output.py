"""What the verbs print: one console on stderr (rich), tables, progress lines, findings, JSON on stdout.

Human output goes to stderr so that stdout carries only what a script asked for (``--json``, ``store path``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lamina.build import BuiltImage
from lamina.family import Family
from lamina.oci.layer import BuiltLayer
from lamina.oci.remote import PushReport
from lamina.python.findings import Finding

console = Console(stderr=True, highlight=False, emoji=False)  # a path or name with ":cd:" in it stays as it is

__all__ = ["console", "escape", "size", "short_path", "table", "print_json", "status", "run_family",
           "print_findings", "error_count", "print_built", "print_push", "print_error"]


def size(n: float) -> str:
    """Bytes for humans, in powers of 1000: ``512 B``, ``1.5 kB``, ``12.3 MB``."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def short_path(where: str) -> str:
    """``/abs/path/file.py:3`` relative to the current directory when it is below it."""
    try:
        return str(Path(where).relative_to(Path.cwd()))
    except ValueError:
        return where


def table(*columns: str, right: Sequence[str] = ()) -> Table:
    """A plain table with these columns (those in ``right`` right-aligned), printed with ``console.print``."""
    t = Table(box=box.SIMPLE_HEAD)
    for column in columns:
        t.add_column(column, justify="right" if column in right else "left")
    return t


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout: the machine-readable result of ``--json``."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


@contextmanager
def status(text: str) -> Iterator[Callable[[str], None]]:
    """A live status line for long work; yields a function that replaces its text."""
    with console.status(text) as s:
        yield lambda new: s.update(new)


def run_family(family: Family, names: Sequence[str], *, lock_only: bool = False,
               on_layer: Callable[[str, BuiltLayer], None] | None = None) -> list[BuiltImage]:
    """Build (or only lock) ``names`` with a live status line showing the last three images' progress
    (``on_layer`` is called too as each layer is done, with the first image that holds it)."""
    states: dict[str, str] = {}
    with status("building…") as update:

        def show(image: str, text: str) -> None:
            states[image] = text
            update("  ".join(f"[bold]{k}[/]: {v}" for k, v in list(states.items())[-3:]))

        def layer_done(image: str, layer: BuiltLayer) -> None:
            verb = "reused" if layer.reused else "built"
            show(image, f"{verb} {layer.description[:60]} ({size(layer.layer.size)})")
            if on_layer is not None:
                on_layer(image, layer)

        family.on_status = show
        family.on_layer = layer_done
        return family.build(list(names), lock_only=lock_only)


def error_count(findings: Sequence[Finding]) -> int:
    return sum(1 for f in findings if f.level == "error")


def print_findings(findings: Sequence[Finding]) -> None:
    """Findings of ``lamina check``, errors first, each with its file:line and hint."""
    colors = {"error": "bold red", "warning": "yellow", "note": "cyan"}
    for f in sorted(findings, key=lambda f: ("error", "warning", "note").index(f.level)):
        where = short_path(f.where)
        console.print(f"[{colors[f.level]}]{f.level}[/] {escape(f'[{f.code}]')} {escape(where)}: {f.image} {escape(f.message)}")
        if f.hint:
            console.print(f"  hint: {escape(f.hint)}")


def print_built(built: Sequence[BuiltImage]) -> None:
    """One row per built image: digest, layers (and how many were built, not reused), size, time."""
    t = table("image", "digest", "layers", "new", "size", "time", right=("layers", "new", "size", "time"))
    for b in built:
        layers = b.image.layers
        t.add_row(b.name, b.image.digest[:19], str(len(layers)), str(len(b.layers) - b.reused),
                  size(sum(d.size for d in layers)), f"{b.seconds:.2f}s")
    console.print(t)


def print_push(report: PushReport) -> None:
    console.print(
        f"pushed [bold]{report.target}[/] {report.digest[:19]}: "
        f"{report.count('uploaded')} uploaded ({size(report.bytes_uploaded)}), "
        f"{report.count('mounted')} mounted, {report.count('exists')} already there"
    )


def print_error(message: str, hint: str | None = None) -> None:
    """The one line (and hint) an error gets: no traceback unless --debug."""
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)  # one line, however wide the terminal
    if hint:
        console.print(f"  [yellow]hint:[/] {escape(hint)}", soft_wrap=True)


def warn(message: str) -> None:
    """A warning on stderr: something was skipped or done another way, and the build goes on."""
    console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)
