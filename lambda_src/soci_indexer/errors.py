"""Every error the indexer raises, in one hierarchy a caller can act on.

All are ``SociError``. They are grouped by the layer that raises them; each
layer imports only this module (and ``settings``) of the package root.
"""

from __future__ import annotations


class SociError(Exception):
    """Base class of every error raised by soci_indexer."""


class PermanentError(SociError):
    """The input itself is wrong or unsupported: trying again cannot help.

    The Lambda handler skips such a record (counted, with the error as reason)
    rather than have SQS deliver it again; any other error is retried.
    """


# ---- engine: layers and zTOCs ----------------------------------------------------------------


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


# ---- oci: references, manifests, registries --------------------------------------------------


class InvalidReference(PermanentError):
    """An image reference that does not parse."""


class TagSelectionError(PermanentError):
    """Tag patterns that are malformed, or that match no tag of the repository."""


class ManifestError(PermanentError):
    """A manifest, index or config that does not decode as what it claims to be."""


class RegistryError(SociError):
    """An OCI registry request failed. Never carries credentials."""

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None) -> None:
        self.status = status
        self.url = url
        detail = ", ".join(part for part in (f"HTTP {status}" if status else "", url or "") if part)
        super().__init__(f"{message} ({detail})" if detail else message)


class AuthError(RegistryError):
    """The registry refused our credentials (or we had none)."""


# ---- pipeline: ensuring an image has its SOCI-enabled image ----------------------------------


class ImageNotFound(PermanentError):
    """The repository has no image under the tag or digest asked for."""


class NothingToIndex(PermanentError):
    """The image has no layer SOCI can index, or is no image SOCI indexes (an artifact,
    SOCI output itself): there is no SOCI-enabled image to give."""


class TagMoved(SociError):
    """Another push took the tag while the run worked; the output was left to that
    image's run. Trying again indexes what the tag names now."""


# ---- stopping a run: raised by the registry client mid-request, and by the pipeline -------------


class DeadlineExceeded(SociError):
    """The run's deadline passed (or a retry would have waited past it); the output tag,
    written last, was not written."""


class Cancelled(SociError):
    """Work stopped because another part of the same run failed first; the run reports
    that failure, not this."""


# ---- aws: the Lambda entry points and ECS ----------------------------------------------------


class ConfigurationError(SociError):
    """One or more environment variables hold values the handler cannot use."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration: " + "; ".join(problems))


class InvalidEvent(PermanentError):
    """An event (or SQS message) that is not a well-formed ECR Image Action."""


class AccountNotAllowed(PermanentError):
    """An event about another account's registry, which this function may not serve."""


class InvalidProperty(PermanentError):
    """A property of the deploy-time custom resource that it cannot use (named in the
    message with its value and what is expected)."""


class NoTimeLeft(SociError):
    """Too little invocation time remains to index an image and still stop cleanly."""


class IndexingFailed(SociError):
    """A directly invoked event failed; raised so Lambda's own retries take over."""


class EcsError(SociError):
    """An ECS API call failed (no credentials, unknown cluster, access denied...)."""


class SqsError(SociError):
    """An SQS API call failed, or a record does not say which queue it came from."""


class EcrError(SociError):
    """An ECR API call failed (access denied, or throttled past boto3's retries)."""


class InvalidBackfill(PermanentError):
    """The backfill custom resource's properties cannot be used (what the construct sets)."""


# ---- cli: the command line -------------------------------------------------------------------


class BadArguments(SociError):
    """Command-line arguments that cannot be used as given (which values, how many)."""


class MissingExtra(SociError):
    """An optional feature whose package is not installed; the message says what to install."""
