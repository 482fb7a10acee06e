"""Fault scenarios: the pipeline run through the fault proxy, then judged.

One scenario pushes a two-platform image to the real registry, breaks the
conversation in one way while the indexer works on it, and then looks at the
registry directly (not through the proxy) to sort the run into one of three
outcomes:

- completed: the run succeeded and ``verify`` passes on what it tagged;
- failed cleanly: the run raised a typed error, and no output tag exists (or
  the one that exists is a complete, verified result of an earlier run);
- corrupted: anything else: the source image or its tags changed, an output
  tag points at something that does not verify, or the run raised something
  other than a typed error. Must never happen.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from faultproxy import Fault, FaultProxy
from soci_indexer.errors import SociError
from soci_indexer.oci.client import RegistryClient, RetryPolicy
from soci_indexer.pipeline import ImageStatus, IndexOptions, index_image
from soci_indexer.verify import verify_image
from support.images import PlatformImage, gzip_tar_layer, push_image, tar_layer
from support.registry import LocalRegistry

CLIENT_TIMEOUT = 2.0  # seconds; a stall longer than this must be noticed and resumed
MID_BLOB = 1_200_000  # bytes of a ~1.5-2 MiB layer sent before its body breaks
OPTIONS = IndexOptions(min_layer_size=0, span_size=256 * 1024, max_workers=2)
_repository_numbers = itertools.count()


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED_CLEANLY = "failed cleanly"
    CORRUPTED = "corrupted"


@dataclass(frozen=True)
class Scenario:
    """A fault class: the faults to inject and whether retries must absorb them."""

    name: str
    faults: Callable[[], list[Fault]]
    evidence: str  # what the proxy's log must show if the fault hit (a Range resume: " 206")
    token_auth: bool = False
    must_complete: bool = True  # transient faults: the run has to get through


@dataclass
class Run:
    scenario: str
    outcome: Outcome
    detail: str = ""
    faults_fired: int = 0
    exchanges: list[str] = field(default_factory=list)
    # The fault was taken and left its trace in the proxy's log (a body fault taken by a
    # response shorter than its break point breaks nothing).
    fault_hit: bool = False


SCENARIOS = [
    Scenario(
        "5xx burst",
        lambda: [Fault("server-error", match="any", times=3, status=503)],
        evidence=" answered 503",
    ),
    Scenario(
        "429 with Retry-After",
        lambda: [Fault("throttle", match="any", times=2)],
        evidence=" answered 429",
    ),
    # Breaks past the client's first 1 MiB chunk, so the download resumes with a Range request.
    # The evidence of a reset is the break itself: an RST makes the receiver drop what it had
    # not read yet, so whether the retry is a Range request depends on how far the client got.
    Scenario(
        "reset mid-blob",
        lambda: [Fault("reset", times=2, after_bytes=MID_BLOB)],
        evidence=" reset after ",
    ),
    Scenario(
        "stalled blob",
        lambda: [Fault("stall", after_bytes=MID_BLOB, stall_seconds=CLIENT_TIMEOUT + 1)],
        evidence=" 206",
    ),
    Scenario(
        "truncated body",
        lambda: [Fault("truncate", times=2, after_bytes=MID_BLOB)],
        evidence=" 206",
    ),
    Scenario(
        "token expires mid-run",
        lambda: [Fault("expire-token", match="any", skip=12, times=1)],
        token_auth=True,
        evidence=" 401",
    ),
    Scenario(
        "5xx on upload",
        lambda: [Fault("server-error", match="upload", times=2, status=500)],
        evidence=" answered 500",
    ),
    Scenario(
        "registry refuses manifests",
        lambda: [Fault("server-error", match="manifest-put", times=10_000, status=500)],
        must_complete=False,
        evidence=" answered 500",
    ),
]


def _image(seed: int) -> list[PlatformImage]:
    """Three layers, each longer than MID_BLOB: which layer's GET a body fault lands on
    depends on thread timing, and a fault on a body shorter than that never breaks it."""
    image = [
        PlatformImage("linux", "amd64", (gzip_tar_layer(3, seed, 0.8), tar_layer(2, seed + 1))),
        PlatformImage("linux", "arm64", (gzip_tar_layer(3, seed + 2, 0.8),)),
    ]
    shortest = min(len(layer.data) for platform in image for layer in platform.layers)
    assert shortest > MID_BLOB + 64 * 1024, f"a {shortest}-byte layer cannot break at {MID_BLOB}"
    return image


def _state(client: RegistryClient, repository: str, tags: list[str]) -> dict[str, str | None]:
    return {tag: client.head_manifest(repository, tag) for tag in tags}


def run_scenario(registry: LocalRegistry, scenario: Scenario, seed: int = 7) -> Run:
    """Push, break, index, judge."""
    direct = registry.client()
    repository = f"faults/case-{next(_repository_numbers)}"
    pushed = push_image(direct, repository, "v1", _image(seed))
    tags_before = sorted(direct.list_tags(repository))
    source_before = _state(direct, repository, tags_before)
    output_tag = "v1" + OPTIONS.tag_suffix

    with FaultProxy(registry.host, token_auth=scenario.token_auth) as proxy:
        faults = scenario.faults()
        planned = sum(fault.times for fault in faults)
        proxy.inject(*faults)
        client = RegistryClient(
            proxy.address,
            plain_http=True,
            retry=RetryPolicy(attempts=5, base_delay=0.05, max_delay=0.5, max_retry_after=2.0),
            timeout=CLIENT_TIMEOUT,
        )
        error: BaseException | None = None
        try:
            result = index_image(client, repository, "v1", OPTIONS)
        except SociError as exc:
            error, result = exc, None
        except Exception as exc:  # judged below: anything untyped is a defect
            error, result = exc, None
        finally:
            client.close()
        fired = planned - proxy.pending_faults()
        exchanges = [str(exchange) for exchange in proxy.log]
    hit = fired > 0 and any(scenario.evidence in line for line in exchanges)

    def judged(outcome: Outcome, detail: str = "") -> Run:
        return Run(scenario.name, outcome, detail, fired, exchanges, hit)

    # The source image and its tags: exactly as they were.
    if _state(direct, repository, tags_before) != source_before:
        return judged(Outcome.CORRUPTED, "the source image's tags changed")
    if direct.head_manifest(repository, "v1") != pushed.digest:
        return judged(Outcome.CORRUPTED, "the source tag moved")
    output = direct.head_manifest(repository, output_tag)

    if error is not None and not isinstance(error, SociError):
        return judged(Outcome.CORRUPTED, f"untyped error {type(error).__name__}: {error}")
    if output is not None:
        report = verify_image(direct, repository, output_tag)
        if not report.ok:
            problems = report.problems + [p for layer in report.layers for p in layer.problems]
            return judged(Outcome.CORRUPTED, f"output tag does not verify: {problems[:3]}")
    if error is not None:
        if output is not None:
            return judged(Outcome.CORRUPTED, "the run failed but an output tag was written")
        return judged(Outcome.FAILED_CLEANLY, str(error))
    assert result is not None
    if result.status is not ImageStatus.INDEXED or output is None:
        return judged(Outcome.CORRUPTED, f"run said {result.status} but tagged {output}")
    return judged(Outcome.COMPLETED)
