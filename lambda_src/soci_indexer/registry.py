"""OCI distribution API client: auth, retries, streaming blobs, uploads."""

from __future__ import annotations


class RegistryClient:
    """Talks to one registry host."""
