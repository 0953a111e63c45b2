"""docker-bake.json: one BuildKit target per image, each base a named context of the images built on it."""

from __future__ import annotations

import json

from lamina.export.common import bases_and_services, build_args, ref_expr
from lamina.export.model import Export


def bake(export: Export) -> str:
    """docker-bake.json: one target per image, each base a named context (target:NAME) of the images on it."""
    config = export.config
    bases, services = bases_and_services(export)
    variables = {k: {"default": v} for k, v in build_args(export)}
    variables["VERSION"] = {"default": config.version or "latest"}
    targets: dict[str, dict] = {}
    for name, image in export.images.items():
        spec = image.spec
        args = {k: f"${{{k}}}" for k, _ in build_args(export)}
        if spec.service is not None:
            args["VERSION"] = "${VERSION}"
        target: dict = {"context": ".", "dockerfile": f"{export.out}/{name}.Dockerfile", "args": args}
        if image.base is not None:
            args["BASE_IMAGE"] = image.base
            target["contexts"] = {image.base: f"target:{image.base}"}
        cache = f"type=registry,ref={ref_expr(export, spec, 'buildcache')}"
        target.update({
            "tags": [ref_expr(export, spec)],
            "platforms": [str(p) for p in spec.platforms],
            "cache-from": [cache],
            "cache-to": [cache + ",mode=max"],
        })
        targets[name] = target
    document = {
        "variable": variables,
        "group": {
            "default": {"targets": list(export.images)},
            "all": {"targets": list(export.images)},
            "bases": {"targets": bases},
            "services": {"targets": services},
        },
        "target": targets,
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
