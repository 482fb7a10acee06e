#!/usr/bin/env bash
# Runs the CDK tests against one aws-cdk-lib version, by default the floor that
# pyproject.toml declares, in a throwaway venv outside the repository (the
# project's own .venv keeps the newest version). Used to choose the floor:
#
#   scripts/check-cdk-floor.sh            # the declared floor
#   scripts/check-cdk-floor.sh 2.230.0    # a candidate
#
# The venv lives in ${CDK_FLOOR_VENV:-${TMPDIR:-/tmp}/soci-cdk-floor} and is reused.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
floor="$(sed -n 's/.*"aws-cdk-lib>=\([0-9.]*\),.*/\1/p' "$root/pyproject.toml")"
version="${1:-$floor}"
venv="${CDK_FLOOR_VENV:-${TMPDIR:-/tmp}/soci-cdk-floor}"
python="${PYTHON:-python3}"

test -x "$venv/bin/python" || "$python" -m venv "$venv"
# The test tools, unpinned as in pyproject.toml; only aws-cdk-lib is pinned.
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet \
    "aws-cdk-lib==$version" "constructs>=10.0.0,<11" "cdk-nag>=3,<4" "cfn-lint>=1.0" \
    "moto[events,ecs]>=5.0" "boto3>=1.34" "pytest>=8" "pytest-timeout>=2.3" "syrupy>=4" \
    "bcrypt>=4"
echo "aws-cdk-lib $("$venv/bin/python" -m pip show aws-cdk-lib | sed -n 's/^Version: //p')"

# The sources of this checkout, not an installed copy; node from node_modules when present.
export PATH="$root/node_modules/.bin:$PATH"
export PYTHONPATH="$root/constructs:$root/lambda_src${PYTHONPATH:+:$PYTHONPATH}"
cd "$root"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/cdk
