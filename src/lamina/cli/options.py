"""Flag groups several verbs share, and the session they open from them."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from lamina.errors import LaminaError, UsageError
from lamina.oci.model import Platform
from lamina.session import Session

STORE_HELP = "store directory (default: $LAMINA_STORE or ~/.cache/lamina)"


def add_config(parser: argparse.ArgumentParser) -> None:
    """--config and --store: which project, which blob store."""
    group = parser.add_argument_group("project")
    group.add_argument("-c", "--config", type=Path, help="path to lamina.toml (default: found upwards from .)")
    group.add_argument("--store", help=STORE_HELP)


def add_registry(parser: argparse.ArgumentParser, *, credentials: bool = True, target: bool = True) -> None:
    """Where images go (--registry, --owner) and how to talk to registries (--insecure-registry, credentials)."""
    group = parser.add_argument_group("registry")
    if target:
        group.add_argument("--registry", help="registry host[:port] (overrides config and LAMINA_REGISTRY)")
        group.add_argument("--owner", help="repository owner/namespace (overrides config and LAMINA_OWNER)")
    group.add_argument("--insecure-registry", action="append", default=[], metavar="HOST",
                       help="allow plain http for HOST (loopback is always allowed)")
    group.add_argument("--ca-file", metavar="PEM", help="trust this CA too (a private registry's; overrides ca_file "
                       "in [project]; SSL_CERT_FILE replaces the system bundle)")
    if credentials:
        group.add_argument("--username", help="registry user (with --password-stdin; else LAMINA_REGISTRY_USERNAME, "
                           "the Docker config or a credential helper)")
        group.add_argument("--password-stdin", action="store_true", help="read the registry password from stdin")
        group.add_argument("--chunk-size", type=int, metavar="BYTES", help="upload blobs in chunks of this size")


def add_output(parser: argparse.ArgumentParser, help: str) -> None:
    """-o/--output: where images are written (oci:DIR or docker-archive:FILE)."""
    parser.add_argument("-o", "--output", metavar="OUTPUT", help=help)


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")


def add_build_flags(parser: argparse.ArgumentParser, *, images: str, output: str, push: str, tag: str, platform: str,
                    locked: str, json: str) -> None:
    """The flags of a build that `lamina plan` takes too (`lamina build --dry-run` hands its own to the plan):
    which images, where they go (-o/--output, --push), --tag, --platform, --locked and --json. Each argument is
    the flag's help for the verb (``json``: what is printed as JSON; argparse.SUPPRESS hides a flag)."""
    parser.add_argument("images", nargs="*", metavar="IMAGE", help=images)
    add_output(parser, output)
    parser.add_argument("--push", action="store_true", help=push)
    parser.add_argument("--tag", help=tag)
    parser.add_argument("--platform", action="append", metavar="OS/ARCH", help=platform)
    parser.add_argument("--locked", action="store_true", help=locked)
    add_json(parser, json)


def password(args: argparse.Namespace) -> str | None:
    """The password of --username, read from stdin (one line) when --password-stdin says so."""
    if getattr(args, "password_stdin", False) and not getattr(args, "username", None):
        raise UsageError("--password-stdin needs --username", hint="add --username USER")
    if not getattr(args, "username", None):
        return None
    if not args.password_stdin:
        raise UsageError("--username needs --password-stdin",
                         hint='echo "$TOKEN" | lamina build --push --username me --password-stdin')
    return sys.stdin.readline().rstrip("\n")


def open_session(args: argparse.Namespace) -> Session:
    """The session the flags describe (those a verb lacks take their defaults)."""
    return Session.open(
        args.config,
        store_root=args.store,
        registry=getattr(args, "registry", None),
        owner=getattr(args, "owner", None),
        insecure=getattr(args, "insecure_registry", ()),
        username=getattr(args, "username", None),
        password=password(args),
        chunk_size=getattr(args, "chunk_size", None),
        ca_file=getattr(args, "ca_file", None),
    )


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps prose paragraphs to the terminal; keeps paragraphs with indented lines (examples, tables) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for para in text.strip("\n").split("\n\n"):
            if any(line.startswith(" ") for line in para.splitlines()):
                paragraphs.append(textwrap.indent(para, indent))
            else:
                paragraphs.append(textwrap.fill(" ".join(para.split()), width, initial_indent=indent,
                                                subsequent_indent=indent))
        return "\n\n".join(paragraphs) + "\n"


def examples(*lines: tuple[str, str]) -> str:
    """An epilog of examples: command, then what it does, aligned (on the next line after a long command)."""
    width = min(max(len(command) for command, _ in lines), 40) + 2
    rows = []
    for command, text in lines:
        if len(command) + 2 > width and text:
            rows += [f"  {command}", f"  {'':{width}}{text}"]
        else:
            rows.append(f"  {command.ljust(width)}{text}".rstrip())
    return "examples:\n" + "\n".join(rows)


def platforms_arg(values: list[str] | None) -> list[Platform]:
    """``--platform`` values (repeatable, or comma-separated) as platforms."""
    texts = [t for value in values or [] for t in value.split(",") if t.strip()]
    try:
        return [Platform.parse(t) for t in texts]
    except LaminaError as e:
        raise UsageError(f"--platform: {e.message}", hint=e.hint) from None
