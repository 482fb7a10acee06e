"""The ``soci-indexer`` command line. The spellings here are a contract.

Each ``_cmd_*`` function belongs to the module it drives; this file only
parses arguments and maps typed errors to exit statuses and one-line messages.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soci_indexer import settings
from soci_indexer.errors import (
    BadArguments,
    ImageNotFound,
    InvalidReference,
    LayerError,
    MissingExtra,
    NothingToIndex,
    SociError,
    TagSelectionError,
)

if TYPE_CHECKING:
    from soci_indexer.engine.readback import Span
    from soci_indexer.engine.ztoc import Ztoc
    from soci_indexer.oci.client import RegistryClient
    from soci_indexer.oci.reference import Reference
    from soci_indexer.pipeline import IndexOptions

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 128 + 13  # as a shell reports a command ended by SIGPIPE


def _byte_count(text: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of bytes, got {text!r}"
        ) from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected at least {minimum} bytes, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _byte_count(text, minimum=1)


def _non_negative_int(text: str) -> int:
    return _byte_count(text, minimum=0)


# Free-text options whose values may start with "-" (``--tag-suffix -lazy``): argparse would
# take such a value for an option, so the pair is joined into ``--tag-suffix=-lazy`` first.
_DASH_VALUE_OPTIONS = ("--tag-suffix", "--build-tool")


class _Parser(argparse.ArgumentParser):
    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        return super().parse_known_args(
            _join_dash_values(sys.argv[1:] if args is None else args), namespace
        )


def _join_dash_values(argv: Sequence[str]) -> list[str]:
    joined: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            joined += [word, *words]
            break
        if word in _DASH_VALUE_OPTIONS:
            value = next(words, None)
            joined.append(word if value is None else f"{word}={value}")
        else:
            joined.append(word)
    return joined


def _subcommand(
    sub: argparse._SubParsersAction[_Parser], name: str, summary: str, description: str
) -> _Parser:
    return sub.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="soci-indexer",
        description="Build SOCI indexes (zTOCs) for container image layers and images.",
        epilog="Exit status: 0 success, 1 failure, 2 bad input, 141 when the reader of the"
        " output stops early (soci-indexer inspect big.ztoc | head -1).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {settings.VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ztoc = _subcommand(
        sub,
        "ztoc",
        "build the zTOC of one layer file (or - for stdin)",
        "Build the zTOC of one layer blob (gzip or plain tar) in one streaming pass and\n"
        "write it to OUT; prints its digest, size, span and entry counts.",
    )
    ztoc.add_argument("layer", metavar="LAYER", help="layer blob path, or - for stdin")
    ztoc.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="where to write the zTOC"
    )
    _span_size(ztoc)
    _build_tool(ztoc)
    ztoc.add_argument(
        "--compression",
        choices=("auto", "gzip", "uncompressed"),
        default="auto",
        help="the layer's compression; auto sniffs the gzip magic (default: %(default)s)",
    )
    ztoc.set_defaults(run=_cmd_ztoc)

    inspect = _subcommand(
        sub,
        "inspect",
        "decode a zTOC: entries, spans, sizes",
        "Decode a zTOC file and print its spans and TOC entries.",
    )
    inspect.add_argument("ztoc", metavar="ZTOC", help="zTOC file to decode")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(run=_cmd_inspect)

    index = _subcommand(
        sub,
        "index",
        "index an image in a registry and push a SOCI-enabled image",
        "Index the layers of an image in a registry and push the SOCI-enabled image;\n"
        "prints its reference and one line per layer. Running it again changes nothing.",
    )
    index.add_argument(
        "image", metavar="IMAGE", help="REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:..."
    )
    _plain_http(index)
    _index_options(index)
    index.set_defaults(run=_cmd_index)

    backfill = _subcommand(
        sub,
        "backfill",
        "index every tag of a repository (or those matching --tag)",
        "Index each tag of a repository through the registry API, one line per tag:\n"
        "TAG  indexed REF, TAG  skipped REASON or TAG  failed ERROR. Tags ending with the\n"
        "tag suffix are the indexer's output and are left alone. Exit status 1 if a tag failed.",
    )
    backfill.add_argument("repository", metavar="REPOSITORY", help="REGISTRY/REPO")
    backfill.add_argument(
        "--tag",
        action="append",
        default=None,
        metavar="PATTERN",
        help="index tags matching this, * as the wildcard (repeatable); default: every tag",
    )
    _plain_http(backfill)
    _index_options(backfill)
    backfill.set_defaults(run=_cmd_backfill)

    ensure = _subcommand(
        sub,
        "ensure",
        "print the SOCI-enabled image of an image by digest, indexing it if missing",
        "Print one line, REGISTRY/REPO@sha256:... of the SOCI-enabled image (what a task\n"
        "definition pins), after indexing the image if it has none; if it has, only\n"
        "manifests are read. With --index-version v1 the SOCI-enabled image is the image\n"
        "itself (v1 indexes bind through its referrers): its own digest is printed.\n"
        "Exit status 2 if the image is not found or has no layer SOCI can index.",
    )
    ensure.add_argument(
        "image", metavar="IMAGE", help="REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:..."
    )
    _plain_http(ensure)
    _index_options(ensure)
    ensure.set_defaults(run=_cmd_ensure)

    verify = _subcommand(
        sub,
        "verify",
        "check a SOCI-enabled image the way the snapshotter does",
        "Check a SOCI-enabled image (v2 output tag, or a v1-indexed image) the way the\n"
        "SOCI snapshotter reads it: every span against its digest, each TOC against its\n"
        "tar, a few files read lazily against a full read. Exit status 1 if a check fails.",
    )
    verify.add_argument(
        "image", metavar="IMAGE", help="REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:..."
    )
    _plain_http(verify)
    verify.set_defaults(run=_cmd_verify)

    pull_times = _subcommand(
        sub,
        "pull-times",
        "image pull durations of recent ECS tasks",
        "Print how long ECS took to pull the images of recent tasks of a cluster\n"
        "(pullStoppedAt - pullStartedAt), to see whether lazy loading pays off.",
    )
    pull_times.add_argument("--cluster", required=True, metavar="NAME", help="ECS cluster")
    pull_times.add_argument(
        "--task",
        action="append",
        default=None,
        metavar="ARN",
        help="task ARN or id (repeatable); default: recent tasks of the cluster",
    )
    pull_times.add_argument(
        "--region", default=None, help="AWS region; default: the usual AWS configuration"
    )
    pull_times.add_argument("--json", action="store_true", help="machine-readable output")
    pull_times.add_argument(
        "--compare",
        nargs="*",
        default=None,
        metavar="FAMILY",
        help="compare two groups of tasks: with no value, plain against SOCI-enabled images;"
        " with two, task definition families (or family:revision), the first as the baseline."
        " Prints both distributions and the reduction in percent",
    )
    pull_times.add_argument(
        "--tag-suffix",
        default=settings.DEFAULT_TAG_SUFFIX,
        metavar="SUFFIX",
        help="an image tagged <tag>SUFFIX counts as SOCI-enabled (default: %(default)s)",
    )
    pull_times.add_argument(
        "--soci-digest",
        action="append",
        default=None,
        metavar="DIGEST",
        help="an image digest known to be SOCI-enabled (repeatable)",
    )
    pull_times.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="draw both distributions of the comparison (plain against SOCI-enabled unless"
        " --compare names families); needs matplotlib: pip install 'soci-fargate[plot]'",
    )
    pull_times.set_defaults(run=_cmd_pull_times)
    return parser


def _index_options(parser: argparse.ArgumentParser) -> None:
    """The options of an indexing run, shared by ``index``, ``ensure`` and ``backfill``."""
    parser.add_argument(
        "--index-version",
        choices=settings.INDEX_VERSIONS,
        default=settings.DEFAULT_INDEX_VERSION,
        help="v2 binds through a new tag; v1 (legacy) through the referrers of the image"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--tag-suffix",
        default=settings.DEFAULT_TAG_SUFFIX,
        metavar="SUFFIX",
        help="v2 output tag is TAG plus this; may start with - (default: %(default)s)",
    )
    parser.add_argument(
        "--platform",
        action="append",
        default=None,
        metavar="OS/ARCH",
        help="index only this platform (repeatable); default: every platform",
    )
    parser.add_argument(
        "--min-layer-size",
        type=_non_negative_int,
        default=settings.DEFAULT_MIN_LAYER_SIZE,
        metavar="BYTES",
        help="leave smaller layers unindexed (default: %(default)s)",
    )
    _span_size(parser)
    _build_tool(parser)
    parser.add_argument(
        "--connections",
        type=_connections,
        default=settings.DEFAULT_BLOB_CONNECTIONS,
        metavar="N",
        help="connections fetching each layer in ranges, 1 for one stream (default: %(default)s)",
    )


def _connections(text: str) -> int:
    limit = settings.MAX_BLOB_CONNECTIONS
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= limit):
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {limit}, got {text!r}")
    return int(text)


def _options(args: argparse.Namespace) -> IndexOptions:
    from soci_indexer.pipeline import IndexOptions

    return IndexOptions(
        index_version=args.index_version,
        tag_suffix=args.tag_suffix,
        platforms=tuple(args.platform or ()),
        min_layer_size=args.min_layer_size,
        span_size=args.span_size,
        build_tool=args.build_tool,
        blob_connections=args.connections,
    )


def _plain_http(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plain-http", action="store_true", help="talk HTTP, not HTTPS (loopback registries)"
    )


def _span_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--span-size",
        type=_positive_int,
        default=settings.DEFAULT_SPAN_SIZE,
        metavar="BYTES",
        help="uncompressed bytes between checkpoints (default: %(default)s)",
    )


def _build_tool(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--build-tool",
        default=settings.DEFAULT_BUILD_TOOL,
        metavar="TEXT",
        help="build tool recorded in the zTOC and SOCI index (default: %(default)s)",
    )


def _cmd_ztoc(args: argparse.Namespace) -> int:
    from soci_indexer.engine.build import build_ztoc

    try:
        source = sys.stdin.buffer if args.layer == "-" else open(args.layer, "rb")  # noqa: SIM115
    except OSError as exc:
        return _fail(EXIT_BAD_INPUT, f"cannot read {args.layer}: {exc.strerror or exc}")
    with source:
        build = build_ztoc(
            source,
            span_size=args.span_size,
            build_tool=args.build_tool,
            compression=args.compression,
        )
    try:
        _write_atomically(Path(args.output), build.data)
    except OSError as exc:
        return _fail(EXIT_FAILED, f"cannot write {args.output}: {exc.strerror or exc}")
    info = build.ztoc.compression
    print(f"ztoc     {build.digest}")
    print(f"size     {len(build.data)}")
    print(f"spans    {info.max_span_id + 1}")
    print(f"entries  {len(build.ztoc.metadata)}")
    return EXIT_OK


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a partial write."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _cmd_inspect(args: argparse.Namespace) -> int:
    from soci_indexer.engine.readback import spans
    from soci_indexer.engine.ztoc import parse
    from soci_indexer.errors import ZtocFormatError

    try:
        data = Path(args.ztoc).read_bytes()
    except OSError as exc:
        return _fail(EXIT_BAD_INPUT, f"cannot read {args.ztoc}: {exc.strerror or exc}")
    try:
        ztoc = parse(data)
        layout = spans(ztoc)
    except ZtocFormatError as exc:
        return _fail(EXIT_BAD_INPUT, f"{args.ztoc} is not a valid zTOC: {exc}")
    document = _inspect_document(data, ztoc, layout)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print("\n".join(_inspect_lines(document)))
    return EXIT_OK


def _inspect_document(data: bytes, ztoc: Ztoc, layout: list[Span]) -> dict[str, Any]:
    return {
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "version": ztoc.version,
        "build_tool": ztoc.build_tool_identifier,
        "compression": ztoc.compression.algorithm.name.lower(),
        "compressed_size": ztoc.compressed_archive_size,
        "uncompressed_size": ztoc.uncompressed_archive_size,
        "spans": [
            {
                "index": span.index,
                "compressed": [span.compressed_start, span.compressed_end],
                "uncompressed": [span.uncompressed_start, span.uncompressed_end],
                "digest": span.digest,
            }
            for span in layout
        ],
        "entries": [
            {
                "name": entry.name,
                "type": entry.type,
                "offset": entry.uncompressed_offset,
                "size": entry.uncompressed_size,
                "linkname": entry.linkname,
                "mode": entry.mode,
                "uid": entry.uid,
                "gid": entry.gid,
                "uname": entry.uname,
                "gname": entry.gname,
                "mod_time": entry.mod_time,
                "devmajor": entry.devmajor,
                "devminor": entry.devminor,
                "xattrs": dict(entry.xattrs),
            }
            for entry in ztoc.metadata
        ],
    }


def _inspect_lines(document: dict[str, Any]) -> list[str]:
    lines = [
        f"ztoc          {document['digest']} ({document['size']} bytes)",
        f"version       {document['version']}, built by {document['build_tool']}",
        f"layer         {document['compression']}, {document['compressed_size']} bytes,"
        f" tar archive {document['uncompressed_size']} bytes",
        f"spans         {len(document['spans'])}",
    ]
    for span in document["spans"]:
        (c_start, c_end), (u_start, u_end) = span["compressed"], span["uncompressed"]
        lines.append(f"  {span['index']:>5}  [{c_start}, {c_end}) -> [{u_start}, {u_end})")
    lines.append(f"entries       {len(document['entries'])}")
    for entry in document["entries"]:
        link = f" -> {entry['linkname']}" if entry["linkname"] else ""
        lines.append(
            f"  {entry['mode']:06o} {entry['type']:<8} {entry['size']:>10} @{entry['offset']:<10}"
            f" {entry['name']}{link}"
        )
    return lines


def _fail(status: int, message: str) -> int:
    print(f"soci-indexer: {message}", file=sys.stderr)
    return status


def _index_run(args: argparse.Namespace) -> tuple[RegistryClient, Reference, IndexOptions]:
    """The client, image and options ``_index_options`` parsed, for ``index`` and ``ensure``."""
    from soci_indexer.aws.ecr import client_for
    from soci_indexer.oci.reference import parse_reference

    image = parse_reference(args.image)
    client = client_for(image.api_host, plain_http=args.plain_http)
    options = _options(args)
    return client, image, options


def _cmd_index(args: argparse.Namespace) -> int:
    from soci_indexer import pipeline
    from soci_indexer.cli import progress

    client, image, options = _index_run(args)
    with progress.shown_on(sys.stderr) as display:
        result = pipeline.index_image(
            client, image.repository, image.target, options, progress=display
        )
    print("\n".join(pipeline.describe(result)))
    return EXIT_OK


def _cmd_backfill(args: argparse.Namespace) -> int:
    from soci_indexer import pipeline
    from soci_indexer.aws.ecr import client_for
    from soci_indexer.oci.reference import parse_repository

    repository = parse_repository(args.repository)
    client = client_for(repository.api_host, plain_http=args.plain_http)
    results = pipeline.backfill(
        client,
        repository.name,
        tuple(args.tag or ()),
        _options(args),
        on_result=lambda result: print(result.line(), flush=True),
    )
    failed = any(result.outcome is pipeline.BackfillOutcome.FAILED for result in results)
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_ensure(args: argparse.Namespace) -> int:
    from soci_indexer import pipeline
    from soci_indexer.cli import progress

    client, image, options = _index_run(args)
    with progress.shown_on(sys.stderr) as display:
        ensured = pipeline.ensure_soci_image(
            client, image.repository, image.target, options, progress=display
        )
    print(ensured.reference)
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from soci_indexer import verify
    from soci_indexer.aws.ecr import client_for
    from soci_indexer.oci.reference import parse_reference

    image = parse_reference(args.image)
    client = client_for(image.api_host, plain_http=args.plain_http)
    report = verify.verify_image(client, image.repository, image.target)
    print("\n".join(verify.describe(report)))
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_pull_times(args: argparse.Namespace) -> int:
    from soci_indexer.aws import pull_times

    comparing = args.compare is not None or args.plot is not None
    families = args.compare or []
    if len(families) not in (0, 2):
        raise BadArguments(
            f"--compare takes no value (plain against SOCI-enabled) or two families, "
            f"got {len(families)}: {' '.join(families)}"
        )
    if not settings.TAG_SUFFIX.fullmatch(args.tag_suffix):
        raise BadArguments(
            f"--tag-suffix {args.tag_suffix!r}: expected {settings.TAG_SUFFIX_EXPECTED}"
        )
    for digest in args.soci_digest or ():
        if not settings.DIGEST.fullmatch(digest):
            raise BadArguments(f"--soci-digest {digest!r}: expected sha256:<64 hex digits>")
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise BadArguments(f"--plot {args.plot}: expected a file name ending in .png")
    ecs = pull_times.ecs_client(args.region)
    report = pull_times.collect(ecs, args.cluster, args.task)
    if not comparing:
        print(pull_times.to_json(report) if args.json else pull_times.format_table(report))
        return EXIT_FAILED if report.failures else EXIT_OK
    comparison = (
        pull_times.compare_families(report, *families)
        if families
        else pull_times.compare_soci(report, args.tag_suffix, args.soci_digest or ())
    )
    if args.plot is not None:
        from soci_indexer.cli import plot

        plot.write_png(comparison, args.plot)
    if args.json:
        print(pull_times.comparison_to_json(comparison))
    else:
        print(pull_times.format_comparison(comparison))
    return EXIT_OK if comparison.complete and not report.failures else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
        sys.stdout.flush()  # a reader gone early shows here, not at interpreter exit
    except BrokenPipeError:
        # Python's documented SIGPIPE handling: the rest of the output goes nowhere, so the
        # interpreter's final flush cannot fail again, and the exit is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    # what the user gave cannot be used
    except (
        BadArguments,
        ImageNotFound,
        InvalidReference,
        LayerError,
        MissingExtra,
        NothingToIndex,
        TagSelectionError,
    ) as exc:
        print(f"soci-indexer: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except SociError as exc:
        print(f"soci-indexer: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return status
