"""What refers to a manifest: the referrers API, or the ``sha256-<hex>`` tag that stands in
for it on registries without that API (the OCI distribution spec's referrers tag schema).

The legacy (v1) SOCI binding lives here: a v1 SOCI index names its image manifest as its
``subject`` and is found only this way, by ``index --index-version v1`` (is it already
indexed?) and by ``verify`` (which indexes to check) alike.
"""

from __future__ import annotations

from soci_indexer import settings
from soci_indexer.oci import manifests
from soci_indexer.oci.client import RegistryClient
from soci_indexer.oci.manifests import Descriptor, ImageIndex


def fallback_referrers(
    client: RegistryClient, repository: str, subject: str
) -> tuple[Descriptor, ...]:
    """What the ``sha256-<hex>`` referrers tag lists for ``subject`` (nothing if absent).

    Raises ManifestError when the tag holds something that is not a manifest.
    """
    tag = manifests.referrers_tag(subject)
    if client.head_manifest(repository, tag) is None:
        return ()
    fetched = client.get_manifest(repository, tag)
    current = manifests.parse_manifest(fetched.data, fetched.media_type)
    return current.manifests if isinstance(current, ImageIndex) else ()


def soci_v1_indexes(client: RegistryClient, repository: str, subject: str) -> list[str]:
    """Digests of the v1 SOCI indexes that name ``subject``, from the referrers API or,
    where the registry lacks it, the fallback tag."""
    listed = client.referrers(repository, subject)
    pairs: list[tuple[object, object]]
    if listed is None:
        pairs = [
            (d.artifact_type, d.digest) for d in fallback_referrers(client, repository, subject)
        ]
    else:
        pairs = [(d.get("artifactType"), d.get("digest")) for d in listed]
    return [str(digest) for kind, digest in pairs if kind == settings.SOCI_INDEX_V1 and digest]
