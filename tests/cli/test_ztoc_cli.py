"""`soci-indexer ztoc` and `soci-indexer inspect`, as a user runs them."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from soci_indexer.cli.main import main

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASE: dict[str, Any] = next(
    case
    for case in json.loads((GOLDEN / "golden.json").read_text())["cases"]
    if case["layer"] == "layers/small-pax.l6.tar.gz" and case["span_size"] == 32768
)
LAYER = GOLDEN / CASE["layer"]
REFERENCE_FLAGS = ["--span-size", str(CASE["span_size"]), "--build-tool", CASE["build_tool"]]


def test_ztoc_writes_the_reference_bytes_and_reports_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "layer.ztoc"
    assert main(["ztoc", str(LAYER), "-o", str(out), *REFERENCE_FLAGS]) == 0
    assert hashlib.sha256(out.read_bytes()).hexdigest() == CASE["ztoc_sha256"]
    assert capsys.readouterr().out.split() == [
        "ztoc",
        "sha256:" + CASE["ztoc_sha256"],
        "size",
        str(CASE["ztoc_size"]),
        "spans",
        "3",
        "entries",
        "17",
    ]


def test_ztoc_reads_the_layer_from_stdin_as_python_dash_m(tmp_path: Path) -> None:
    out = tmp_path / "layer.ztoc"
    result = subprocess.run(
        [sys.executable, "-m", "soci_indexer", "ztoc", "-", "-o", str(out), *REFERENCE_FLAGS],
        input=LAYER.read_bytes(),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == CASE["ztoc_sha256"]


def test_ztoc_leaves_only_the_output_file_behind(tmp_path: Path) -> None:
    out = tmp_path / "layer.ztoc"
    assert main(["ztoc", str(LAYER), "-o", str(out)]) == 0
    assert sorted(tmp_path.iterdir()) == [out]


def test_a_failed_build_leaves_an_existing_output_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "layer.ztoc"
    out.write_bytes(b"previous")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(LAYER.read_bytes()[:-10])
    assert main(["ztoc", str(bad), "-o", str(out)]) == 2
    assert out.read_bytes() == b"previous"
    assert sorted(tmp_path.iterdir()) == [bad, out]
    assert "truncated gzip stream" in capsys.readouterr().err


def test_forcing_uncompressed_on_a_gzip_layer_fails_as_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "layer.ztoc"
    assert main(["ztoc", str(LAYER), "-o", str(out), "--compression", "uncompressed"]) == 2
    assert not out.exists()
    assert capsys.readouterr().err.count("\n") == 1


def test_a_missing_layer_file_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ztoc", str(tmp_path / "absent"), "-o", str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_inspect_json_lists_every_entry_where_tarfile_finds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ztoc = GOLDEN / CASE["ztoc"]
    assert main(["inspect", str(ztoc), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["digest"] == "sha256:" + CASE["ztoc_sha256"]
    assert document["size"] == CASE["ztoc_size"]
    assert document["compression"] == "gzip"
    assert document["compressed_size"] == LAYER.stat().st_size
    with tarfile.open(LAYER) as tar:
        members = tar.getmembers()
    assert [(entry["offset"], entry["size"]) for entry in document["entries"]] == [
        (member.offset_data, member.size) for member in members
    ]
    spans = document["spans"]
    assert spans[0]["compressed"][0] == 10  # a bare gzip header
    assert spans[-1]["compressed"][1] == LAYER.stat().st_size


def test_inspect_text_shows_sizes_spans_and_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(GOLDEN / CASE["ztoc"])]) == 0
    text = capsys.readouterr().out
    assert f"({CASE['ztoc_size']} bytes)" in text
    assert "spans         3" in text
    assert "usr/bin/hard -> usr/bin/tool" in text


def test_inspect_refuses_a_file_that_is_not_a_ztoc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x07" * 64)
    assert main(["inspect", str(junk)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("soci-indexer: ")
    assert "not a valid zTOC" in error
    assert error.count("\n") == 1


@pytest.fixture(scope="module")
def inspect_into_head(
    tmp_path_factory: pytest.TempPathFactory,
) -> subprocess.CompletedProcess[bytes]:
    """``soci-indexer inspect big.ztoc | head -1`` through real pipes: the listing (about
    0.6 MB) is far more than a pipe holds, so the command is still writing when head exits."""
    folder = tmp_path_factory.mktemp("big")
    layer, out = folder / "many.tar", folder / "big.ztoc"
    with tarfile.open(layer, "w", format=tarfile.USTAR_FORMAT) as tar:
        for number in range(5000):
            tar.addfile(tarfile.TarInfo(f"{'deep/' * 16}file-{number:05d}"))
    assert main(["ztoc", str(layer), "-o", str(out)]) == 0
    inspect = subprocess.Popen(
        [sys.executable, "-m", "soci_indexer", "inspect", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert inspect.stdout is not None
    assert inspect.stderr is not None
    head = subprocess.run(["head", "-1"], stdin=inspect.stdout, capture_output=True, check=True)
    inspect.stdout.close()  # head holds the only reader now; it is gone once head exits
    error = inspect.stderr.read()
    status = inspect.wait(timeout=60)
    return subprocess.CompletedProcess(inspect.args, status, head.stdout, error)


def test_inspect_into_a_reader_that_stops_early_prints_nothing_on_stderr(
    inspect_into_head: subprocess.CompletedProcess[bytes],
) -> None:
    assert inspect_into_head.stdout.startswith(b"ztoc          sha256:")
    assert inspect_into_head.stderr == b""


def test_inspect_into_a_reader_that_stops_early_exits_141_like_a_sigpipe(
    inspect_into_head: subprocess.CompletedProcess[bytes],
) -> None:
    assert inspect_into_head.returncode == 141
