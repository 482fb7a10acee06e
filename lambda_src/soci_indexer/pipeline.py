"""Image reference -> SOCI-enabled image: per platform, per layer, through the engine.

Knows the registry only through ``registry.RegistryClient``; knows nothing of AWS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from soci_indexer import DEFAULT_BUILD_TOOL, DEFAULT_MIN_LAYER_SIZE, DEFAULT_SPAN_SIZE

if TYPE_CHECKING:
    from soci_indexer.registry import RegistryClient


@dataclass(frozen=True, slots=True)
class IndexOptions:
    index_version: Literal["v2", "v1"] = "v2"
    tag_suffix: str = "-soci"
    platforms: tuple[str, ...] = ()  # "os/arch[/variant]"; empty: every platform
    min_layer_size: int = DEFAULT_MIN_LAYER_SIZE
    span_size: int = DEFAULT_SPAN_SIZE
    build_tool: str = DEFAULT_BUILD_TOOL
    max_workers: int = 4  # layers indexed at once
    deadline: float | None = None  # time.monotonic() after which the run stops before pushing


class LayerStatus(StrEnum):
    INDEXED = "indexed"
    TOO_SMALL = "skipped-too-small"
    UNSUPPORTED = "skipped-unsupported"  # zstd, foreign media type, unsupported tar entry
    CORRUPT = "skipped-corrupt"


class ImageStatus(StrEnum):
    INDEXED = "indexed"
    ALREADY_INDEXED = "already-indexed"
    NO_QUALIFYING_LAYERS = "skipped-no-qualifying-layers"
    SOCI_ARTIFACT = "skipped-soci-artifact"  # the push is itself SOCI output
    NOT_AN_IMAGE = "skipped-not-an-image"  # attestation, signature, other artifact


@dataclass(frozen=True, slots=True)
class LayerOutcome:
    platform: str
    digest: str
    media_type: str
    size: int
    status: LayerStatus
    reason: str = ""
    ztoc_digest: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ImageResult:
    repository: str
    reference: str  # the tag or digest asked for
    status: ImageStatus
    output_reference: str | None  # "REGISTRY/REPO:TAG-soci@sha256:..." when something was pushed
    layers: tuple[LayerOutcome, ...]
    seconds: float
    reason: str = ""


def index_image(
    client: RegistryClient,
    repository: str,
    reference: str,
    options: IndexOptions = IndexOptions(),
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> ImageResult:
    """Index ``repository:reference`` and push its SOCI-enabled image.

    ``progress(layer_digest, bytes_done, bytes_total)`` reports long layers.
    """
    raise NotImplementedError
