"""OCI images: deterministic layers, the blob store, image documents, layouts, archives and registries.

Nothing in this package knows about Python or Debian packages.
"""
