"""``soci-indexer pull-times --compare / --json / --plot`` on a recorded DescribeTasks response.

tests/aws/fixtures/describe-tasks-compare.json holds 14 tasks of cluster sims:
six plain ``simulation:6`` tasks (stopped; pulls of 44, 62, 40, 47, 52 and 45 s),
six SOCI-enabled ``simulation:7`` tasks on ``v1.4.2-soci`` (13, 20, 11, 16, 12
and 14 s), one ``simulation:7`` task still PENDING, and one ``worker:3`` task
pinned to a digest (9 s). Expected percentiles are worked out by hand below,
with linear interpolation between the closest ranks.
"""

from __future__ import annotations

import json
import re
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.stub import Stubber
from soci_indexer.aws import pull_times
from soci_indexer.cli.main import main
from support.ecs_responses import ecs_client, wire_response

PINNED = "sha256:1f2e3d4c5b6a79880716253443526170a9b8c7d6e5f40312a1b2c3d4e5f60718"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """ECS answers the listing of recent tasks, then DescribeTasks, from the recording."""
    ecs = ecs_client()
    monkeypatch.setattr(pull_times, "ecs_client", lambda region: ecs)
    described = wire_response(ecs, "DescribeTasks", "describe-tasks-compare.json")
    arns = [task["taskArn"] for task in described["tasks"]]
    with Stubber(ecs) as stub:
        for status, listed in (("RUNNING", arns[6:]), ("STOPPED", arns[:6])):
            stub.add_response(
                "list_tasks",
                {"taskArns": listed},
                {"cluster": "sims", "desiredStatus": status, "maxResults": 100},
            )
        stub.add_response(
            "describe_tasks", described, {"cluster": "sims", "tasks": arns[6:] + arns[:6]}
        )
        yield stub


def rows(out: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]


def test_compare_without_families_sets_soci_enabled_against_plain_images(
    recorded: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull-times", "--cluster", "sims", "--compare"]) == 0
    table = rows(capsys.readouterr().out)
    # plain: 9 40 44 45 47 52 62 (the pinned worker counts as plain: its digest is not listed)
    #   p50 = 45; p90 = rank 5.4 -> 52 + 0.4 * 10 = 56
    # SOCI-enabled: 11 12 13 14 16 20 (and one pending task)
    #   p50 = rank 2.5 -> 13.5; p90 = rank 4.5 -> 18
    assert table == [
        ["TASKS", "PULLED", "MIN", "P50", "P90", "MAX"],
        ["plain", "7", "7", "9.0 s", "45.0 s", "56.0 s", "62.0 s"],
        ["SOCI-enabled", "7", "6", "11.0 s", "13.5 s", "18.0 s", "20.0 s"],
        [
            "SOCI-enabled pulls took 70% less at p50 (45.0 s -> 13.5 s), "
            "68% less at p90 (56.0 s -> 18.0 s) than plain"
        ],
    ]


def test_a_listed_digest_makes_a_pinned_image_soci_enabled(
    recorded: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["pull-times", "--cluster", "sims", "--compare", "--soci-digest", PINNED, "--json"]
    assert main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["baseline"]["pull_seconds"] == [40.0, 44.0, 45.0, 47.0, 52.0, 62.0]
    assert document["candidate"]["pull_seconds"] == [9.0, 11.0, 12.0, 13.0, 14.0, 16.0, 20.0]


def test_compare_two_revisions_of_a_family_and_print_json_for_scripts(
    recorded: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["pull-times", "--cluster", "sims", "--compare", "simulation:6", "simulation:7"]
    assert main([*argv, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    # simulation:6: 40 44 45 47 52 62 -> p50 = 46, p90 = rank 4.5 -> 57
    assert {k: document["baseline"][k] for k in ("label", "tasks", "pulled", "p50", "p90")} == {
        "label": "simulation:6",
        "tasks": 6,
        "pulled": 6,
        "p50": 46.0,
        "p90": 57.0,
    }
    assert (document["candidate"]["tasks"], document["candidate"]["pulled"]) == (7, 6)
    assert (document["candidate"]["min"], document["candidate"]["max"]) == (11.0, 20.0)
    # 1 - 13.5 / 46 and 1 - 18 / 57
    assert document["reduction_percent"]["p50"] == pytest.approx(70.652, abs=1e-3)
    assert document["reduction_percent"]["p90"] == pytest.approx(68.421, abs=1e-3)
    assert document["cluster"] == "sims"


def test_families_are_matched_by_name_without_a_revision(
    recorded: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull-times", "--cluster", "sims", "--compare", "simulation", "worker"]) == 0
    table = rows(capsys.readouterr().out)
    assert table[1][:3] == ["simulation", "13", "12"]  # both revisions, and the pending task
    # simulation: 11 12 13 14 16 20 40 44 45 47 52 62
    #   p50 = rank 5.5 -> (20 + 40) / 2 = 30; p90 = rank 9.9 -> 47 + 0.9 * 5 = 51.5
    # worker: 9; 1 - 9 / 30 = 70%, 1 - 9 / 51.5 = 82.5%
    assert table[3] == [
        "worker pulls took 70% less at p50 (30.0 s -> 9.0 s), "
        "83% less at p90 (51.5 s -> 9.0 s) than simulation"
    ]


def test_a_group_without_a_finished_pull_is_no_comparison_and_fails(
    recorded: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull-times", "--cluster", "sims", "--compare", "simulation:6", "batch"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "no comparison: batch had no finished pull"


def test_plot_writes_a_png_of_both_distributions(
    recorded: Stubber, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "pulls.png"
    assert main(["pull-times", "--cluster", "sims", "--plot", str(target)]) == 0
    data = target.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1100, 462)  # 10 x 4.2 inches at 110 dpi
    assert 20_000 < len(data) < 500_000
    assert "SOCI-enabled pulls took 70% less" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--compare", "simulation"], "--compare takes no value"),
        (["--compare", "a", "b", "c"], "got 3: a b c"),
        (["--soci-digest", "sha256:abc"], "--soci-digest 'sha256:abc'"),
        (["--tag-suffix", "a/b"], "--tag-suffix 'a/b'"),
        (["--plot", "pulls.svg"], "ending in .png"),
    ],
)
def test_bad_comparison_arguments_are_one_line_and_exit_status_two(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull-times", "--cluster", "sims", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("soci-indexer: ")
    assert message in err


def test_without_matplotlib_plot_says_how_to_install_it(
    recorded: Stubber,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` meets
    assert main(["pull-times", "--cluster", "sims", "--plot", str(tmp_path / "p.png")]) == 2
    assert capsys.readouterr().err == (
        "soci-indexer: --plot needs matplotlib: pip install 'soci-fargate[plot]' (or matplotlib)\n"
    )
    assert not (tmp_path / "p.png").exists()


def test_the_table_without_compare_is_unchanged(
    recorded: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull-times", "--cluster", "sims"]) == 0
    # 9 11 12 13 14 16 20 40 44 45 47 52 62: the seventh is the median
    assert rows(capsys.readouterr().out)[-1] == ["14 tasks, 13 pulled: median 20.0 s, max 62.0 s"]
