"""The ``lamina`` command: flags in, library calls out.

One module per verb (``lamina/cli/<verb>.py``, listed in ``VERBS``), each with ``register(sub)``, which adds its
subparser (a description that teaches, an epilog of examples, ``set_defaults(func=run)``), and ``run(args) -> int``.
The verbs call the library (``lamina.session.Session`` and what it opens); ``output`` prints, ``options`` holds the
flag groups they share. This module parses, dispatches and turns errors into one line and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from lamina import __version__
from lamina.cli.options import HelpFormatter
from lamina.errors import EXIT_CODES, EXIT_INTERNAL, EXIT_INTERRUPTED, LaminaError, exit_code

#: The verb modules, in the order ``lamina --help`` lists them.
VERBS = ("init", "build", "lock", "check", "test", "export", "plan", "outdated", "update", "rebase", "report",
         "diff", "sbom", "keygen", "sign", "verify", "store")

DESCRIPTION = """\
Build the container images of a Python monorepo as one layered family, without a Docker daemon.

lamina reads lamina.toml, writes deterministic OCI images (same inputs, same digests, on any
machine) into a content-addressed store, and publishes them to an OCI layout directory (the
default), a docker-archive tar, or a registry, uploading only the blobs the registry lacks.
`lamina COMMAND --help` says what each command reads and writes, with examples.
"""

EPILOG = """\
examples:
  lamina init                           write lamina.toml for a repo laid out like libs/ + apps/svc_*/
  lamina check                          what would fail at run time: missing imports, pin conflicts
  lamina build                          build every image into build/oci (an OCI layout)
  lamina build hello --output docker-archive:hello.tar
  lamina build --push --registry 127.0.0.1:5000
  lamina lock                           (re)resolve Debian and Python packages into lamina.lock
  lamina build --locked                 build exactly what lamina.lock says (CI)
  lamina test                           start the services with podman, wait for their health checks
  lamina export all                     Dockerfiles, docker-bake.json and scripts for BuildKit users
  lamina store gc                       drop blobs no recorded image uses
  lamina sbom svc-forms --format cyclonedx   the SBOM of a built image (SPDX by default)
  lamina keygen && lamina build --push --sign cosign.key   sign, attach SBOMs and signed provenance
  lamina verify REGISTRY/OWNER/svc-forms:1.0.0 --key cosign.pub   CI gate: signature, provenance, SBOMs

environment:
  LAMINA_STORE       store directory (default ~/.cache/lamina)
  LAMINA_REGISTRY, LAMINA_OWNER, LAMINA_VERSION, LAMINA_BASE_VERSION   override [project] values
  LAMINA_REGISTRY_USERNAME, LAMINA_REGISTRY_PASSWORD   registry credentials
  SOURCE_DATE_EPOCH  timestamp written into images (default 1970-01-01T00:00:01Z)
  LAMINA_JOBS        threads for compression (default: the number of cores)
  LAMINA_STAGING     where layer trees are staged (default: /dev/shm when it is tmpfs with 4 GB
                     free, else the store's tmp/)
  LAMINA_KEY_PASSWORD (or COSIGN_PASSWORD)   password of the signing key (else read from stdin)

exit codes:
  0    success
{codes}
  {internal}   an unexpected error: a bug in lamina (rerun with --debug and report the traceback)
  {interrupted}  interrupted (Ctrl-C)
"""


def _exit_code_lines() -> str:
    seen: dict[int, list[str]] = {}
    for _, code, text in EXIT_CODES:
        seen.setdefault(code, []).append(text)
    return "\n".join(f"  {code:<4} {'; '.join(texts)}" for code, texts in sorted(seen.items()))


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given the command line, only the verb it names (importing one verb's module, not
    seventeen, is most of a no-op build's start-up time)."""
    parser = argparse.ArgumentParser(
        prog="lamina", description=DESCRIPTION, formatter_class=HelpFormatter,
        epilog=EPILOG.format(codes=_exit_code_lines(), interrupted=EXIT_INTERRUPTED, internal=EXIT_INTERNAL),
    )
    parser.add_argument("--version", action="version", version=f"lamina {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what lamina does (registry requests, never secrets)")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error (for bug reports)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for verb in _verbs_for(argv):
        importlib.import_module(f"lamina.cli.{verb}").register(sub)
    _global_flags_everywhere(parser)
    return parser


def _verbs_for(argv: Sequence[str] | None) -> Sequence[str]:
    """The verb the command line names (its first word that is not a flag), else all of them (for --help,
    --version, a mistyped verb: argparse then lists every choice)."""
    words = [a for a in argv or () if not a.startswith("-")]
    return (words[0],) if words and words[0] in VERBS else VERBS


def _global_flags_everywhere(parser: argparse.ArgumentParser) -> None:
    """Accept --verbose and --debug after the verb too (``lamina build --debug``), at any depth."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                   help=argparse.SUPPRESS)
                child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                _global_flags_everywhere(child)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lamina`` with ``argv`` (default: sys.argv[1:]) and return its exit code."""
    args = argv if argv is not None else sys.argv[1:]
    debug = "--debug" in args  # known before parsing, so that an error while importing a verb is shown fully
    try:
        parser = build_parser(args)
        try:
            ns = parser.parse_args(args)
        except SystemExit as e:  # --help, --version, or a usage error argparse has printed
            return e.code if isinstance(e.code, int) else 0
        ns.argv = list(args)  # as given: `build --on` runs the same command elsewhere
        _logging(ns.verbose or ns.debug)
        if not hasattr(ns, "func"):
            parser.print_help(sys.stderr)
            return 2
        return ns.func(ns)
    except LaminaError as e:
        from lamina.cli.output import print_error

        if debug:
            traceback.print_exc()
        print_error(e.message, e.hint)
        return exit_code(e)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:  # the machine's, not lamina's: a full disk, a permission, a missing folder
        from lamina.cli.output import print_error
        from lamina.oci.files import disk_error

        if debug:
            traceback.print_exc()
        full = disk_error(e, e.filename or "a file lamina writes")
        if full is not None:
            print_error(full.message, full.hint)
        else:
            where = f": {e.filename}" if e.filename else ""
            print_error(f"{e.strerror or e}{where}", "check the path and its permissions, then run again")
        return 1
    except Exception as e:  # noqa: BLE001 - the last resort: one line, the traceback only on request
        if debug:
            traceback.print_exc()
        where = "" if debug else "; rerun with --debug to see where, and report it"
        print(f"error: unexpected {type(e).__name__}: {e}{where}", file=sys.stderr)
        return EXIT_INTERNAL


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(name)s: %(message)s",
                        stream=sys.stderr)
    for noisy in ("httpx", "httpcore"):  # they log full URLs; lamina.registry logs requests without secrets
        logging.getLogger(noisy).setLevel(logging.WARNING)
