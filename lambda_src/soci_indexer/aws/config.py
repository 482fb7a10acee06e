"""The handler's configuration: environment variables read and checked once, at cold start.

The constructs set these variables (names in ``settings``). A bad value must stop
the function before it touches a registry, with one message that names every
variable that is wrong, what it held and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from soci_indexer import settings
from soci_indexer.errors import ConfigurationError
from soci_indexer.oci.manifests import IndexVersion
from soci_indexer.pipeline import IndexOptions

T = TypeVar("T")

_BOOLEANS = {"true": True, "false": False}


@dataclass(frozen=True, slots=True)
class HandlerConfig:
    """Everything the handler needs besides the event itself."""

    index_options: IndexOptions = field(default_factory=IndexOptions)
    allow_cross_account: bool = False
    metrics_namespace: str = settings.DEFAULT_METRICS_NAMESPACE
    service_name: str = settings.DEFAULT_SERVICE_NAME
    log_level: str = settings.DEFAULT_LOG_LEVEL


class _Reader:
    """Reads variables from one environment, collecting problems instead of stopping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def get(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r}: expected {expected}")
            return default


def parse_whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(text)
        return value

    return parse


def matching(pattern: re.Pattern[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not pattern.fullmatch(text):
            raise ValueError(text)
        return text

    return parse


def parse_index_version(text: str) -> IndexVersion:
    if text == "v2":
        return "v2"
    if text == "v1":
        return "v1"
    raise ValueError(text)


def _platforms(text: str) -> tuple[str, ...]:
    platforms = tuple(part.strip() for part in text.split(",") if part.strip())
    for platform in platforms:
        matching(settings.PLATFORM)(platform)
    return platforms


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in settings.LOG_LEVELS:
        raise ValueError(text)
    return level


def _boolean(text: str) -> bool:
    try:
        return _BOOLEANS[text.lower()]
    except KeyError:
        raise ValueError(text) from None


def load_config(environ: Mapping[str, str]) -> HandlerConfig:
    """Parse the handler's variables from ``environ``; unset or blank means the default.

    Raises ``ConfigurationError`` listing every bad variable at once, so one
    redeploy fixes them all.
    """
    read = _Reader(environ)
    options = IndexOptions(
        index_version=read.get(
            settings.ENV_INDEX_VERSION,
            settings.DEFAULT_INDEX_VERSION,
            parse_index_version,
            " or ".join(f'"{version}"' for version in settings.INDEX_VERSIONS),
        ),
        tag_suffix=read.get(
            settings.ENV_TAG_SUFFIX,
            settings.DEFAULT_TAG_SUFFIX,
            matching(settings.TAG_SUFFIX),
            settings.TAG_SUFFIX_EXPECTED + " (an empty suffix would overwrite the tag)",
        ),
        platforms=read.get(
            settings.ENV_PLATFORMS, (), _platforms, 'comma-separated "os/arch[/variant]" values'
        ),
        min_layer_size=read.get(
            settings.ENV_MIN_LAYER_SIZE,
            settings.DEFAULT_MIN_LAYER_SIZE,
            parse_whole_number(0),
            "a whole number of bytes, zero or more",
        ),
        span_size=read.get(
            settings.ENV_SPAN_SIZE,
            settings.DEFAULT_SPAN_SIZE,
            parse_whole_number(1),
            "a positive whole number of bytes",
        ),
        build_tool=read.get(settings.ENV_BUILD_TOOL, settings.DEFAULT_BUILD_TOOL, str, "any text"),
        max_workers=read.get(
            settings.ENV_MAX_WORKERS,
            settings.DEFAULT_MAX_LAYER_WORKERS,
            parse_whole_number(1, settings.MAX_LAYER_WORKERS),
            f"a whole number from 1 to {settings.MAX_LAYER_WORKERS}",
        ),
        blob_connections=read.get(
            settings.ENV_BLOB_CONNECTIONS,
            settings.DEFAULT_BLOB_CONNECTIONS,
            parse_whole_number(1, settings.MAX_BLOB_CONNECTIONS),
            f"a whole number from 1 to {settings.MAX_BLOB_CONNECTIONS}",
        ),
        range_size=read.get(
            settings.ENV_RANGE_SIZE,
            settings.DEFAULT_RANGE_SIZE,
            parse_whole_number(settings.MIN_RANGE_SIZE, settings.MAX_RANGE_SIZE),
            f"a whole number of bytes from {settings.MIN_RANGE_SIZE} to {settings.MAX_RANGE_SIZE}",
        ),
    )
    config = HandlerConfig(
        index_options=options,
        allow_cross_account=read.get(
            settings.ENV_ALLOW_CROSS_ACCOUNT, False, _boolean, '"true" or "false"'
        ),
        metrics_namespace=read.get(
            settings.ENV_METRICS_NAMESPACE,
            settings.DEFAULT_METRICS_NAMESPACE,
            matching(settings.METRICS_NAMESPACE),
            "a CloudWatch namespace: " + settings.METRICS_NAMESPACE_EXPECTED,
        ),
        service_name=read.get(
            settings.ENV_SERVICE_NAME,
            settings.DEFAULT_SERVICE_NAME,
            matching(settings.SERVICE_NAME),
            settings.SERVICE_NAME_EXPECTED,
        ),
        log_level=read.get(
            settings.ENV_LOG_LEVEL,
            settings.DEFAULT_LOG_LEVEL,
            _log_level,
            " or ".join(settings.LOG_LEVELS),
        ),
    )
    if read.problems:
        raise ConfigurationError(read.problems)
    return config
