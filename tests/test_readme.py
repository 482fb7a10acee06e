"""What a user pastes from the README works: every ``python`` block runs as written.

Each block is run on its own, in a fresh process and an empty folder, the way
a user would run it as ``app.py``; a CDK app must synthesize its stacks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", README.read_text(encoding="utf-8"), re.M | re.S)


def test_the_readme_has_python_examples() -> None:
    assert BLOCKS, "no ```python block found: the test below would check nothing"


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block-{n}" for n in range(1, len(BLOCKS) + 1)])
def test_a_python_block_of_the_readme_runs_as_pasted(block: str, tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(block, encoding="utf-8")
    out = tmp_path / "cdk.out"
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=tmp_path,
        env={**os.environ, "CDK_OUTDIR": str(out)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    if "aws_cdk" in block:
        # A CDK example is a whole app, so what it defines is also synthesized.
        assert "app.synth()" in block, "a CDK example must end with app.synth()"
        templates = list(out.glob("*.template.json"))
        assert templates, f"app.synth() wrote no template: {sorted(p.name for p in out.iterdir())}"
        for template in templates:
            assert json.loads(template.read_text())["Resources"]
