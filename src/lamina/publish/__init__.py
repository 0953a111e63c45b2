"""Where built images go: an OCI layout directory (the default), a docker-archive tar, a registry.

Building never knows about outputs; outputs never build. Every output takes :class:`Named` artifacts —
one platform's image, or an index over several — behind the same interface (:class:`Publisher`),
which is also where attachments (signatures, SBOMs) are added to what was published.
"""

from lamina.publish.local import Output, OutputKind, write_output
from lamina.publish.named import Named, Publisher
from lamina.publish.registry import push

__all__ = ["Named", "Output", "OutputKind", "Publisher", "push", "write_output"]
