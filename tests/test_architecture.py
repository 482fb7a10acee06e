"""The layering the folders show is the layering the imports have.

`make lint` runs the import-linter contracts in pyproject.toml; these tests
check that they hold, that each one fails on the import it forbids (a contract
that cannot fail guards nothing), and what `import soci_cdk` really loads.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from soci_indexer import settings

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run the project's contracts over the two source roots below ``root``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root / "lambda_src"), str(root / "constructs")]),
    }
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "lambda_src", root / "lambda_src", ignore=ignore)
    shutil.copytree(REPO / "constructs", root / "constructs", ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_code_keeps_every_layering_contract() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


# (file, the import planted in it, the contract that must break)
VIOLATIONS = [
    ("lambda_src/soci_indexer/engine/tar.py", "from soci_indexer.oci import client", "layers"),
    ("lambda_src/soci_indexer/oci/client.py", "from soci_indexer.engine import ztoc", "layers"),
    ("lambda_src/soci_indexer/oci/client.py", "from soci_indexer.aws import ecr", "layers"),
    ("lambda_src/soci_indexer/pipeline.py", "from soci_indexer import verify", "layers"),
    ("lambda_src/soci_indexer/aws/events.py", "from soci_indexer.cli import main", "layers"),
    ("lambda_src/soci_indexer/settings.py", "from soci_indexer import errors", "layers"),
    (
        "constructs/soci_cdk/index_builder.py",
        "from soci_indexer.pipeline import IndexOptions",
        "constructs-read-settings-only",
    ),
    (
        "constructs/soci_cdk/index_builder.py",
        "from soci_cdk.repository import SociRepository",
        "builder-and-repository-apart",
    ),
    ("lambda_src/soci_indexer/aws/handler.py", "import aws_cdk", "indexer-knows-no-constructs"),
    ("lambda_src/soci_indexer/oci/client.py", "import boto3", "aws-only-in-aws"),
    (
        "lambda_src/soci_indexer/aws/pull_time_monitor.py",
        "from soci_indexer.aws import pull_times",  # reaches botocore
        "pull-time-monitor-stdlib-only",
    ),
    (
        "lambda_src/soci_indexer/aws/pull_time_monitor.py",
        "from soci_indexer.aws.events import parse_image_action",  # reaches oci
        "pull-time-monitor-stdlib-only",
    ),
]


@pytest.mark.parametrize(("path", "planted", "contract"), VIOLATIONS)
def test_each_contract_breaks_on_the_import_it_forbids(
    source_copy: Path, path: str, planted: str, contract: str
) -> None:
    target = source_copy / path
    original = target.read_text()
    target.write_text(original + f"\n{planted}  # planted by the test\n")
    try:
        result = _lint_imports(source_copy)
    finally:
        target.write_text(original)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = {line.removesuffix(" BROKEN") for line in result.stdout.splitlines()}
    names = {c["id"]: c["name"] for c in _contracts()}
    assert names[contract] in broken, result.stdout


def _contracts() -> list[dict[str, str]]:
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def test_importing_the_constructs_loads_settings_and_nothing_else_of_the_indexer() -> None:
    probe = (
        "import json, sys, soci_cdk; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'soci_indexer')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    assert json.loads(result.stdout) == ["soci_indexer", "soci_indexer.settings"]


@pytest.mark.parametrize("handler", [settings.LAMBDA_HANDLER, settings.PULL_TIME_MONITOR_HANDLER])
def test_the_handlers_the_constructs_deploy_are_functions_of_the_indexer(handler: str) -> None:
    module_name, _, function_name = handler.rpartition(".")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, function_name))
    assert module_name.startswith("soci_indexer.aws.")


def test_settings_imports_nothing_of_the_project() -> None:
    source = Path(settings.__file__).read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == [
        "from __future__ import annotations",
        "import re",
        "from typing import Final",
    ]
