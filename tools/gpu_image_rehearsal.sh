#!/usr/bin/env bash
# Rehearse tools/gpu_check.sh on a CPU machine with the GPU image's versions (Python 3.12,
# torch 2.11.0+cu130, torchvision 0.26.0; see docs/performance.md), then run the test suite
# against that build. Needs python3.12 and the package registry. Run from the repo root:
#   bash tools/gpu_image_rehearsal.sh [WORKDIR]        (default /tmp/pyhash-rehearsal)
# Set PYHASH_DATA (see tests/conftest.py) to include the tests that read the real data.
set -euo pipefail
work="${1:-/tmp/pyhash-rehearsal}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$work"
if [ ! -x "$work/venv/bin/python" ]; then
  python3.12 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q torch==2.11.0 torchvision==0.26.0 numpy tqdm matplotlib \
    pytest pytest-benchmark hypothesis setuptools wheel ninja
fi
rm -rf "$work/clone" "$work/out" "$work/tests"
git clone -q "$repo" "$work/clone"
(cd "$work/clone" && PATH="$work/venv/bin:$PATH" MAX_JOBS="${MAX_JOBS:-2}" OUT="$work/out" bash tools/gpu_check.sh)
# The suite from outside the source tree (so the installed build is imported); test_readme reads
# .ci/run from the repo root, so it is left out here.
mkdir -p "$work/tests" && cp -r "$work/clone/tests" "$work/clone/pyproject.toml" "$work/tests/"
cd "$work/tests" && "$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests --ignore=tests/test_readme.py
