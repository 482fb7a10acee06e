"""One streaming pass: layer bytes in, zTOC out (inflate || tar reader || digests)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO, Literal

from soci_indexer import DEFAULT_BUILD_TOOL, DEFAULT_SPAN_SIZE
from soci_indexer.ztoc import Ztoc

CompressionChoice = Literal["auto", "gzip", "uncompressed"]


@dataclass(frozen=True, slots=True)
class ZtocBuild:
    ztoc: Ztoc
    data: bytes  # serialized zTOC
    digest: str  # "sha256:<hex>" of data
    layer_digest: str  # "sha256:<hex>" of every input byte, as read
    layer_size: int  # input bytes read


def build_ztoc(
    source: BinaryIO | Iterable[bytes],
    *,
    span_size: int = DEFAULT_SPAN_SIZE,
    build_tool: str = DEFAULT_BUILD_TOOL,
    compression: CompressionChoice = "auto",
    progress: Callable[[int], None] | None = None,
) -> ZtocBuild:
    """Index a layer read once from ``source`` (a binary stream or chunks).

    Raises UnsupportedLayer / CorruptLayer (both LayerError) for layers that
    cannot be indexed. ``progress`` is called with the count of input bytes
    consumed so far, from the reading thread.
    """
    raise NotImplementedError
