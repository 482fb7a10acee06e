"""Errors a caller can act on. Every error the package raises is a SociError."""

from __future__ import annotations


class SociError(Exception):
    """Base class of every error raised by soci_indexer."""


class LayerError(SociError):
    """A layer cannot be indexed. ``reason`` says why, ``offset`` where.

    ``offset`` is a byte offset in the *uncompressed* tar stream for tar
    problems and in the compressed blob for compression problems (see
    ``stream``), or None when no position applies.
    """

    def __init__(self, reason: str, offset: int | None = None, stream: str = "tar") -> None:
        self.reason = reason
        self.offset = offset
        self.stream = stream
        where = "" if offset is None else f" at {stream} offset {offset}"
        super().__init__(f"{reason}{where}")


class UnsupportedLayer(LayerError):
    """Valid input SOCI cannot index: zstd, global PAX headers, sparse files..."""


class CorruptLayer(LayerError):
    """Malformed input: truncated or corrupt stream, bad header, trailing bytes..."""


class ZtocFormatError(SociError):
    """Bytes that do not decode as a zTOC (or as its checkpoint blob)."""


class RegistryError(SociError):
    """An OCI registry request failed. Never carries credentials."""

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None) -> None:
        self.status = status
        self.url = url
        detail = ", ".join(part for part in (f"HTTP {status}" if status else "", url or "") if part)
        super().__init__(f"{message} ({detail})" if detail else message)


class AuthError(RegistryError):
    """The registry refused our credentials (or we had none)."""


class InvalidReference(SociError):
    """An image reference that does not parse."""
