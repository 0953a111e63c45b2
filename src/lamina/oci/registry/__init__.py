"""lamina's OCI distribution registry client (push, pull, auth), built on httpx.

Modules, one concept each: ``credentials`` (where secrets come from), ``auth`` (the 401 challenge flow),
``session`` (scheme, retries, logging, error mapping), ``upload`` (the blob upload protocol) and
``client`` (:class:`RegistryClient`, the verbs).
"""

from lamina.oci.registry.client import EXISTS, MOUNTED, UPLOADED, Fetched, RegistryClient, TransferStats
from lamina.oci.registry.credentials import Credential, find_credential

__all__ = [
    "EXISTS",
    "MOUNTED",
    "UPLOADED",
    "Credential",
    "Fetched",
    "RegistryClient",
    "TransferStats",
    "find_credential",
]
