"""The command-line spellings other tools rely on."""

from __future__ import annotations

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
        ["verify", "127.0.0.1:5000/repo:tag-soci", "--plain-http"],
        ["pull-times", "--cluster", "sims", "--task", "arn:aws:ecs:x", "--task", "abc"],
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
