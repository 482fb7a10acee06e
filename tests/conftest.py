"""Shared test set-up."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# jsii (under aws-cdk-lib) runs on Node.js; prefer the Node 22 that `make`
# installs into node_modules over an end-of-life system Node.
_local_node = REPO_ROOT / "node_modules" / ".bin" / "node"
if _local_node.exists() and "JSII_NODE" not in os.environ:
    os.environ["JSII_NODE"] = str(_local_node)
elif shutil.which("node") is None:
    raise RuntimeError("Node.js is needed for aws-cdk-lib: run `make test`, which installs it")
