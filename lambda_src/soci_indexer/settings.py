"""Names of the environment variables the constructs set and the handler reads.

Both sides import these names so the wiring cannot drift.
"""

ENV_INDEX_VERSION = "SOCI_INDEX_VERSION"  # "v2" (default) or "v1"
ENV_TAG_SUFFIX = "SOCI_TAG_SUFFIX"  # default "-soci"
ENV_MIN_LAYER_SIZE = "SOCI_MIN_LAYER_SIZE_BYTES"  # default 10485760
ENV_SPAN_SIZE = "SOCI_SPAN_SIZE_BYTES"  # default 4194304
ENV_PLATFORMS = "SOCI_PLATFORMS"  # comma separated "os/arch[/variant]"; empty: all
ENV_BUILD_TOOL = "SOCI_BUILD_TOOL"  # build tool identifier written in zTOCs
ENV_MAX_WORKERS = "SOCI_MAX_LAYER_WORKERS"  # concurrent layers per image
ENV_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"  # EMF namespace
ENV_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
ENV_LOG_LEVEL = "LOG_LEVEL"
# "true" lets the handler index images of accounts other than its own (events
# forwarded from another account's bus); default "false".
ENV_ALLOW_CROSS_ACCOUNT = "SOCI_ALLOW_CROSS_ACCOUNT"

DEFAULT_INDEX_VERSION = "v2"
DEFAULT_TAG_SUFFIX = "-soci"
DEFAULT_METRICS_NAMESPACE = "SociIndexBuilder"
DEFAULT_SERVICE_NAME = "soci-index-builder"
