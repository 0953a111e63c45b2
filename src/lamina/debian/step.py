"""The Debian step: an image's packages from Debian's signed archive, as layers, without apt."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lamina.config import ImageSpec
from lamina.debian import LOCK_KIND, uses_debian
from lamina.steps import StepContext, StepLayer, StepResult

if TYPE_CHECKING:
    from lamina.debian.image import Debian, DebianState


class DebianStep:
    """Lock or resolve an image's packages on top of what its base has, then describe their layers.

    The Debian session (archive, indexes, the modules that read them) is made by ``make_session`` when
    the first image that installs packages is planned: a family of Python images on a published base
    never imports it."""

    kind = LOCK_KIND

    def __init__(self, make_session: Callable[[], Debian]) -> None:
        self._make_session = make_session
        self._session: Debian | None = None

    @property
    def session(self) -> Debian:
        if self._session is None:
            self._session = self._make_session()
        return self._session

    def applies(self, spec: ImageSpec) -> bool:
        return uses_debian(spec)

    def run(self, ctx: StepContext) -> StepResult:
        from lamina.debian.image import DebianState, debian_env, installed_after, packages_of

        prior = ctx.states.get(self.kind)
        before = self.session.base_state(ctx.spec, ctx.platform, prior if isinstance(prior, DebianState) else None,
                                         ctx.base_image, ctx.base_name, ctx.registries)
        section, resolved = self.session.section(ctx.spec, before, ctx.lock_section(self.kind))
        after = installed_after(before, section)
        result = StepResult(self.kind, after, section, resolved, env=debian_env(ctx.spec, after, ctx.base_env),
                            os_packages=os_packages(after), facts=distro_facts(after))
        if ctx.fetch:
            prepared = self.session.layers(ctx.spec, after, section, media_type=ctx.media_type, mtime=ctx.mtime,
                                           download=ctx.download)
            result.layers = [StepLayer(spec, components) for spec, components in prepared.layers]
            result.added, result.downloaded = len(packages_of(section)), prepared.downloaded
        return result

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


#: Debian's release names and numbers (the purl qualifier ``distro=debian-12``).
RELEASE_NUMBERS = {"buster": "10", "bullseye": "11", "bookworm": "12", "trixie": "13", "forky": "14"}


def distro_facts(state: DebianState) -> dict[str, str]:
    """``distro = "debian-12"`` (and the release name) for the image's inventory."""
    number = RELEASE_NUMBERS.get(state.release)
    return {"debian_release": state.release, **({"distro": f"debian-{number}"} if number else {})}


def os_packages(state: DebianState) -> dict[str, str]:
    """Installed packages as name → version (what later steps may ask of the OS)."""
    return {name: p.version for name, p in state.installed.items()}
