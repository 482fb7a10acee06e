"""The ``soci-indexer`` command line. The spellings here are a contract.

Each ``_cmd_*`` function belongs to the module it drives; this file only
parses arguments and maps typed errors to exit statuses and one-line messages.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from soci_indexer import DEFAULT_BUILD_TOOL, DEFAULT_MIN_LAYER_SIZE, DEFAULT_SPAN_SIZE, __version__
from soci_indexer.errors import LayerError, SociError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of bytes, got {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of bytes, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of bytes, got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected zero or more bytes, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soci-indexer",
        description="Build SOCI indexes (zTOCs) for container image layers and images.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ztoc = sub.add_parser("ztoc", help="build the zTOC of one layer file (or - for stdin)")
    ztoc.add_argument("layer", metavar="LAYER", help="layer blob path, or - for stdin")
    ztoc.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="where to write the zTOC"
    )
    ztoc.add_argument("--span-size", type=_positive_int, default=DEFAULT_SPAN_SIZE, metavar="BYTES")
    ztoc.add_argument("--build-tool", default=DEFAULT_BUILD_TOOL, metavar="TEXT")
    ztoc.add_argument(
        "--compression",
        choices=("auto", "gzip", "uncompressed"),
        default="auto",
        help="auto (default) sniffs the gzip magic",
    )
    ztoc.set_defaults(run=_cmd_ztoc)

    inspect = sub.add_parser("inspect", help="decode a zTOC: entries, spans, sizes")
    inspect.add_argument("ztoc", metavar="ZTOC")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(run=_cmd_inspect)

    index = sub.add_parser(
        "index", help="index an image in a registry and push a SOCI-enabled image"
    )
    index.add_argument(
        "image", metavar="IMAGE", help="REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:..."
    )
    index.add_argument(
        "--plain-http", action="store_true", help="talk HTTP, not HTTPS (loopback registries)"
    )
    index.add_argument("--index-version", choices=("v2", "v1"), default="v2")
    index.add_argument("--tag-suffix", default="-soci", metavar="SUFFIX")
    index.add_argument(
        "--platform",
        action="append",
        default=None,
        metavar="OS/ARCH",
        help="index only this platform (repeatable); default: every platform",
    )
    index.add_argument(
        "--min-layer-size", type=_non_negative_int, default=DEFAULT_MIN_LAYER_SIZE, metavar="BYTES"
    )
    index.add_argument(
        "--span-size", type=_positive_int, default=DEFAULT_SPAN_SIZE, metavar="BYTES"
    )
    index.add_argument("--build-tool", default=DEFAULT_BUILD_TOOL, metavar="TEXT")
    index.set_defaults(run=_cmd_index)

    verify = sub.add_parser(
        "verify", help="check a SOCI-enabled image the way the snapshotter does"
    )
    verify.add_argument("image", metavar="IMAGE")
    verify.add_argument("--plain-http", action="store_true")
    verify.set_defaults(run=_cmd_verify)

    pull_times = sub.add_parser("pull-times", help="image pull durations of recent ECS tasks")
    pull_times.add_argument("--cluster", required=True, metavar="NAME")
    pull_times.add_argument(
        "--task",
        action="append",
        default=None,
        metavar="ARN",
        help="task ARN or id (repeatable); default: recent tasks of the cluster",
    )
    pull_times.add_argument("--region", default=None)
    pull_times.add_argument("--json", action="store_true")
    pull_times.set_defaults(run=_cmd_pull_times)
    return parser


def _cmd_ztoc(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _cmd_inspect(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _cmd_index(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _cmd_verify(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _cmd_pull_times(args: argparse.Namespace) -> int:
    from soci_indexer import ecs_pull_times

    ecs = ecs_pull_times.ecs_client(args.region)
    report = ecs_pull_times.collect(ecs, args.cluster, args.task)
    print(ecs_pull_times.to_json(report) if args.json else ecs_pull_times.format_table(report))
    return EXIT_FAILED if report.failures else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except LayerError as exc:
        print(f"soci-indexer: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SociError as exc:
        print(f"soci-indexer: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return status
