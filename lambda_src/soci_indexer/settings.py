"""The one place for what both packages share: names, defaults, limits, patterns, media types.

The indexer and the constructs (``soci_cdk``) both read these, so a default or
a rule cannot drift between what is deployed and what runs. This module
imports nothing of the project (only ``re``): ``import soci_cdk`` loads it and
``soci_indexer/__init__`` and nothing else of the indexer (a test checks).
"""

from __future__ import annotations

import re
from typing import Final

VERSION = "0.1.0"

# ---- What the constructs deploy --------------------------------------------------------------

# The Lambda entry point, as the dotted name Lambda resolves in the asset.
LAMBDA_HANDLER = "soci_indexer.aws.handler.handler"

# Environment variables the constructs set and the handler reads.
ENV_INDEX_VERSION = "SOCI_INDEX_VERSION"  # "v2" (default) or "v1"
ENV_TAG_SUFFIX = "SOCI_TAG_SUFFIX"  # default "-soci"
ENV_MIN_LAYER_SIZE = "SOCI_MIN_LAYER_SIZE_BYTES"  # default 10485760
ENV_SPAN_SIZE = "SOCI_SPAN_SIZE_BYTES"  # default 4194304
ENV_PLATFORMS = "SOCI_PLATFORMS"  # comma separated "os/arch[/variant]"; empty: all
ENV_BUILD_TOOL = "SOCI_BUILD_TOOL"  # build tool identifier written in zTOCs
ENV_MAX_WORKERS = "SOCI_MAX_LAYER_WORKERS"  # concurrent layers per image
ENV_BLOB_CONNECTIONS = "SOCI_BLOB_CONNECTIONS"  # connections fetching one layer in ranges
ENV_RANGE_SIZE = "SOCI_RANGE_SIZE_BYTES"  # bytes per ranged request
ENV_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"  # EMF namespace
ENV_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
ENV_LOG_LEVEL = "LOG_LEVEL"
# "true" lets the handler index images of accounts other than its own (events
# forwarded from another account's bus); default "false".
ENV_ALLOW_CROSS_ACCOUNT = "SOCI_ALLOW_CROSS_ACCOUNT"

# The deploy-time custom resource behind ``SociImage`` (``aws.custom_resource``).
# CloudFormation passes every property as a string (lists of strings stay lists).
CUSTOM_RESOURCE_TYPE = "Custom::SociImage"
CUSTOM_RESOURCE_ON_EVENT = "soci_indexer.aws.custom_resource.on_event"
CUSTOM_RESOURCE_IS_COMPLETE = "soci_indexer.aws.custom_resource.is_complete"
CR_REGISTRY = "Registry"  # registry host, "<account>.dkr.ecr.<region>.amazonaws.com"
CR_REPOSITORY = "Repository"  # the source image's repository name
CR_REFERENCE = "Reference"  # its tag or "sha256:..." digest
CR_TARGET_REPOSITORY = "TargetRepository"  # optional: write the SOCI-enabled image here
CR_INDEX_VERSION = "IndexVersion"
CR_SPAN_SIZE = "SpanSize"  # bytes, decimal
CR_MIN_LAYER_SIZE = "MinLayerSize"  # bytes, decimal
CR_PLATFORMS = "Platforms"  # list of "os/arch[/variant]"; empty: all
CR_TAG_SUFFIX = "TagSuffix"
# What the custom resource returns (Fn::GetAtt names). The physical id (Ref) is
# "<registry>/<target repository>@<source digest>", not the SOCI-enabled image: pin ImageUri.
CR_IMAGE_URI = "ImageUri"  # "<registry>/<repository>@sha256:<SOCI-enabled image>"
CR_IMAGE_DIGEST = "ImageDigest"
CR_SOURCE_DIGEST = "SourceDigest"
# When on_event found no SOCI-enabled image: the time (Unix seconds) it asked is_complete to
# build one, so is_complete can tell when the wait is over (a Data field, not for users).
CR_BUILD_REQUESTED_AT = "BuildRequestedAt"
# CloudFormation's own property: how long it waits for the resource (seconds, 1 to 3600).
CR_SERVICE_TIMEOUT = "ServiceTimeout"
CR_MAX_SERVICE_TIMEOUT_SECONDS = 3600
CR_QUERY_INTERVAL_SECONDS = 30  # how often the provider polls is_complete

# The deploy-time backfill custom resource of ``SociIndexBuilder(backfill=...)``
# (``aws.backfill``): images already in the builder's repositories are queued as pushes.
BACKFILL_HANDLER = "soci_indexer.aws.backfill.on_event"
BACKFILL_RESOURCE_TYPE = "Custom::SociBackfill"
BF_ACCOUNT = "Account"  # the registry's account: the stack's
BF_REGION = "Region"
BF_QUEUE_URL = "QueueUrl"  # the builder's queue
BF_REPOSITORIES = "Repositories"  # list of names and REPOSITORY_FILTERs ("*": every one)
BF_TAG_FILTERS = "TagFilters"  # list of TAG_FILTERs; empty: every tag
BF_TAG_SUFFIX = "TagSuffix"  # the builder's output tags, never queued
BF_MAX_AGE_SECONDS = "MaxAgeSeconds"  # images pushed longer ago are left out; decimal
BF_MAX_IMAGES = "MaxImages"  # most tags queued in all, newest first; decimal
# What the backfill returns (Fn::GetAtt names): tags queued, repositories looked at, and
# matching tags left out because they were older than the maximum age or over the cap.
BF_QUEUED = "Queued"
BF_REPOSITORY_COUNT = "Repositories"
BF_SKIPPED = "Skipped"

# The pull-time monitor's function (``PullTimeMonitor``): standard library only
# (no boto3, no engine), from the same asset as the indexer.
PULL_TIME_MONITOR_HANDLER = "soci_indexer.aws.pull_time_monitor.handler"
# Besides ENV_TAG_SUFFIX, ENV_METRICS_NAMESPACE, ENV_SERVICE_NAME and ENV_LOG_LEVEL, the
# monitor reads the digests of images known to be SOCI-enabled (comma separated).
ENV_SOCI_DIGESTS = "SOCI_ENABLED_DIGESTS"
DEFAULT_PULL_TIME_NAMESPACE = "SociPullTimes"
DEFAULT_PULL_TIME_SERVICE = "soci-pull-time-monitor"
# The ECS events the monitor's rule matches and its handler reads.
ECS_EVENT_SOURCE = "aws.ecs"
ECS_TASK_STATE_CHANGE = "ECS Task State Change"
# The handler's metrics (EMF), shared with the constructs' metric_* methods.
METRIC_PULL_SECONDS = "PullSeconds"  # dimensions soci, cluster, family (in that order)
METRIC_TASK_EVENTS = "TaskEvents"  # reason: pulled, pending, not-pulled, not-running, invalid-event
METRIC_PUSH_TO_SOCI_SECONDS = "PushToSociSeconds"  # the indexer's: event time -> output tag

# The ECR events the builder's rule matches and the handler reads.
ECR_EVENT_SOURCE = "aws.ecr"
ECR_IMAGE_ACTION = "ECR Image Action"

# ---- Defaults and limits ---------------------------------------------------------------------

INDEX_VERSIONS = ("v2", "v1")
DEFAULT_INDEX_VERSION: Final = "v2"
DEFAULT_TAG_SUFFIX = "-soci"
DEFAULT_BUILD_TOOL = f"soci-fargate v{VERSION}"  # written into every zTOC
DEFAULT_SPAN_SIZE = 4 * 1024 * 1024  # uncompressed bytes between checkpoints
DEFAULT_MIN_LAYER_SIZE = 10 * 1024 * 1024  # smaller layers get no zTOC
DEFAULT_MAX_LAYER_WORKERS = 4  # layers of one image indexed at once
MAX_LAYER_WORKERS = 32
# One layer is fetched in ranges over this many connections at once, each range
# held whole until the engine reaches it: at most connections x range size bytes
# in flight per layer (default 4 x 8 MiB = 32 MiB). Measured by bench/network_bench.py.
DEFAULT_BLOB_CONNECTIONS = 4
MAX_BLOB_CONNECTIONS = 16
DEFAULT_RANGE_SIZE = 8 * 1024 * 1024
MIN_RANGE_SIZE = 256 * 1024  # smaller ranges spend more on requests than they gain
MAX_RANGE_SIZE = 64 * 1024 * 1024
DEFAULT_METRICS_NAMESPACE = "SociIndexBuilder"
DEFAULT_SERVICE_NAME = "soci-index-builder"
# Python's names and Lambda's (TRACE, WARN, FATAL) for the handler's LOG_LEVEL.
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL")
DEFAULT_LOG_LEVEL = "INFO"
# A record that failed in a way worth retrying is hidden this long before its next
# delivery, doubled for each delivery so far (1, 2, 4... minutes), at most the maximum,
# instead of the queue's whole visibility timeout.
RETRY_DELAY_SECONDS = 60
MAX_RETRY_DELAY_SECONDS = 15 * 60

# The backfill's defaults and bounds: each tag queued costs one indexing run.
DEFAULT_BACKFILL_MAX_AGE_DAYS = 30
DEFAULT_BACKFILL_MAX_IMAGES = 100
MAX_BACKFILL_IMAGES = 1000

# ---- Patterns (ASCII classes on purpose: ``\d`` and ``\w`` accept other scripts) -------------

# An image tag, as the OCI distribution spec and ECR define it.
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# A tag pattern (the builder's tag_filters, backfill's --tag): a tag with "*" as the wildcard.
TAG_FILTER = re.compile(r"[A-Za-z0-9._*-]{1,128}")
TAG_FILTER_EXPECTED = "1 to 128 of A-Z a-z 0-9 . _ - and the wildcard *"
# A repository filter (the builder's repository_name_filters, the backfill's repositories):
# a repository name with "*" as the wildcard. ECR names are lowercase.
REPOSITORY_FILTER = re.compile(r"[a-z0-9._/*-]{1,256}")
REPOSITORY_FILTER_EXPECTED = "1 to 256 of a-z 0-9 . _ / - and the wildcard *"
# A content digest this project reads or writes.
DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
# Any digest the OCI image spec's grammar allows: what an event is checked against
# (AWS's own documented example events carry shortened digests).
DIGEST_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+")
# One path component of a repository name (OCI distribution spec).
REPOSITORY_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
MAX_REPOSITORY_NAME = 255
# What is appended to a tag to name its SOCI-enabled image.
TAG_SUFFIX = re.compile(r"[A-Za-z0-9._-]{1,64}")
TAG_SUFFIX_EXPECTED = "1 to 64 of A-Z a-z 0-9 . _ -"
# A platform to index: "os/arch" or "os/arch/variant".
PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?")
PLATFORM_EXPECTED = '"os/arch" or "os/arch/variant"'
# A CloudWatch namespace a user may write to ("AWS/" is reserved for AWS).
METRICS_NAMESPACE = re.compile(r"(?!AWS/)[A-Za-z0-9._/#: -]{1,255}")
METRICS_NAMESPACE_EXPECTED = '1 to 255 of A-Z a-z 0-9 . _ / # : - and space, not starting "AWS/"'
# The ``service`` dimension and log field.
SERVICE_NAME = re.compile(r"[A-Za-z0-9._/#: -]{1,255}")
SERVICE_NAME_EXPECTED = "1 to 255 of A-Z a-z 0-9 . _ / # : - and space"

# ---- Media types -----------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
IMAGE_CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)

GZIP_LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
TAR_LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar",
)
ZSTD_LAYER_TYPES = ("application/vnd.oci.image.layer.v1.tar+zstd",)

SOCI_INDEX_V1 = "application/vnd.amazon.soci.index.v1+json"
SOCI_INDEX_V2 = "application/vnd.amazon.soci.index.v2+json"
SOCI_INDEX_TYPES = (SOCI_INDEX_V1, SOCI_INDEX_V2)
