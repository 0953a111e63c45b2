"""The Debian step: an image's packages from Debian's signed archive, as layers, without apt."""

from __future__ import annotations

from lamina.config import ImageSpec
from lamina.debian.image import (
    LOCK_KIND,
    Debian,
    DebianState,
    debian_env,
    installed_after,
    packages_of,
    uses_debian,
)
from lamina.steps import StepContext, StepLayer, StepResult


class DebianStep:
    """Lock or resolve an image's packages on top of what its base has, then describe their layers."""

    kind = LOCK_KIND

    def __init__(self, session: Debian) -> None:
        self.session = session

    def applies(self, spec: ImageSpec) -> bool:
        return uses_debian(spec)

    def run(self, ctx: StepContext) -> StepResult:
        prior = ctx.states.get(self.kind)
        before = self.session.base_state(ctx.spec, ctx.platform, prior if isinstance(prior, DebianState) else None,
                                         ctx.base_image, ctx.base_name, ctx.registries)
        section, resolved = self.session.section(ctx.spec, before, ctx.lock_section(self.kind))
        after = installed_after(before, section)
        result = StepResult(self.kind, after, section, resolved, env=debian_env(ctx.spec, after, ctx.base_env),
                            os_packages=os_packages(after))
        if ctx.fetch:
            prepared = self.session.layers(ctx.spec, after, section, media_type=ctx.media_type, mtime=ctx.mtime)
            result.layers = [StepLayer(spec, components) for spec, components in prepared.layers]
            result.added, result.downloaded = len(packages_of(section)), prepared.downloaded
        return result

    def close(self) -> None:
        self.session.close()


def os_packages(state: DebianState) -> dict[str, str]:
    """Installed packages as name → version (what later steps may ask of the OS)."""
    return {name: p.version for name, p in state.installed.items()}
