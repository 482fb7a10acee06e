"""The command-line spellings other tools rely on."""

from __future__ import annotations

import argparse

import pytest
from soci_indexer.cli.main import build_parser


@pytest.mark.parametrize(
    "argv",
    [
        [
            "ztoc",
            "layer.tar",
            "-o",
            "out.ztoc",
            "--span-size",
            "65536",
            "--build-tool",
            "x",
            "--compression",
            "gzip",
        ],
        ["inspect", "a.ztoc", "--json"],
        [
            "index",
            "127.0.0.1:5000/repo:tag",
            "--plain-http",
            "--index-version",
            "v1",
            "--tag-suffix=-lazy",
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/arm64",
            "--min-layer-size",
            "0",
            "--span-size",
            "1048576",
        ],
        [
            "backfill",
            "127.0.0.1:5000/repo",
            "--tag",
            "v*",
            "--tag",
            "latest",
            "--plain-http",
            "--tag-suffix",
            "-lazy",
            "--min-layer-size",
            "0",
        ],
        ["ensure", "127.0.0.1:5000/repo:tag", "--plain-http", "--index-version", "v1"],
        ["verify", "127.0.0.1:5000/repo:tag-soci", "--plain-http"],
        ["pull-times", "--cluster", "sims", "--task", "arn:aws:ecs:x", "--task", "abc"],
        ["pull-times", "--cluster", "sims", "--compare", "--plot", "pulls.png", "--json"],
        [
            "pull-times",
            "--cluster",
            "sims",
            "--compare",
            "simulation:6",
            "simulation:7",
            "--tag-suffix",
            "-lazy",
            "--soci-digest",
            "sha256:" + "0" * 64,
        ],
    ],
)
def test_documented_command_lines_parse(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.command == argv[0]


@pytest.mark.parametrize("size", ["0", "-1", "4MiB"])
def test_span_size_must_be_a_positive_byte_count(
    size: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["ztoc", "l", "-o", "o", "--span-size", size])
    assert exc.value.code == 2
    assert "span-size" in capsys.readouterr().err


@pytest.mark.parametrize("count", ["0", "17", "four"])
def test_connections_must_be_a_count_from_1_to_16(
    count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["index", "127.0.0.1:5000/repo:tag", "--connections", count])
    assert exc.value.code == 2
    assert "--connections: expected a whole number from 1 to 16" in capsys.readouterr().err


def test_connections_reach_the_index_options() -> None:
    from soci_indexer.cli.main import _options

    args = build_parser().parse_args(["index", "127.0.0.1:5000/repo:tag", "--connections", "1"])
    assert _options(args).blob_connections == 1


@pytest.mark.parametrize("spelling", [["--tag-suffix", "-lazy"], ["--tag-suffix=-lazy"]])
def test_a_tag_suffix_starting_with_a_dash_is_taken_as_written(spelling: list[str]) -> None:
    args = build_parser().parse_args(["index", "127.0.0.1:5000/repo:tag", *spelling])
    assert args.tag_suffix == "-lazy"


def test_a_build_tool_starting_with_a_dash_is_taken_as_written() -> None:
    args = build_parser().parse_args(["ztoc", "layer.tar", "-o", "o", "--build-tool", "-x"])
    assert args.build_tool == "-x"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_subcommand_has_a_description(name: str) -> None:
    assert subcommands()[name].description


@pytest.mark.parametrize(
    ("name", "dest"),
    [(name, a.dest) for name, sub in sorted(subcommands().items()) for a in arguments(sub)],
)
def test_every_argument_of_every_subcommand_has_help(name: str, dest: str) -> None:
    (action,) = (a for a in arguments(subcommands()[name]) if a.dest == dest)
    assert action.help


@pytest.mark.parametrize(
    ("name", "dest"),
    [
        (name, a.dest)
        for name, sub in sorted(subcommands().items())
        for a in arguments(sub)
        if a.default not in (None, False)
    ],
)
def test_every_default_is_shown_in_the_help(name: str, dest: str) -> None:
    sub = subcommands()[name]
    (action,) = (a for a in arguments(sub) if a.dest == dest)
    shown = " ".join(sub.format_help().split())
    assert f"(default: {action.default})" in shown


def test_backfill_takes_every_option_of_index() -> None:
    spellings = {
        name: {spelling for action in arguments(parser) for spelling in action.option_strings}
        for name, parser in subcommands().items()
    }
    assert spellings["index"] <= spellings["backfill"]
