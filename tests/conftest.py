"""Shared test set-up."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.registry import LocalRegistry, installed, running_registry

REPO_ROOT = Path(__file__).resolve().parent.parent

# jsii (under aws-cdk-lib) runs on Node.js; prefer the Node 22 that `make`
# installs into node_modules over an end-of-life system Node.
_local_node = REPO_ROOT / "node_modules" / ".bin" / "node"
if _local_node.exists() and "JSII_NODE" not in os.environ:
    os.environ["JSII_NODE"] = str(_local_node)
elif shutil.which("node") is None:
    raise RuntimeError("Node.js is needed for aws-cdk-lib: run `make test`, which installs it")


# ---- A real OCI registry (docker-registry) on loopback, one per session --------------------


@pytest.fixture(scope="session")
def registry() -> Iterator[LocalRegistry]:
    """One docker-registry for the session; tests use distinct repository names."""
    if not installed():
        pytest.skip("docker-registry is not installed: run scripts/install-system-deps.sh")
    with running_registry() as running:
        yield running
