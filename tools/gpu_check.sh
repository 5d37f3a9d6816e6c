#!/usr/bin/env bash
# One-shot GPU check for a lent H200 (see docs/performance.md): build, CUDA tests, GPU benchmarks.
# Run from the repo root on the GPU machine:   bash tools/gpu_check.sh
# Writes under $OUT (default ./gpu_out): build.log, tests.log, bench.log, summary.txt. ~5-8 minutes.
set -uo pipefail
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-16}"
summary="$OUT/summary.txt"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} > "$summary" 2>&1

start=$(date +%s)
python3 -m pip install --no-build-isolation --no-deps . > "$OUT/build.log" 2>&1
build_rc=$?
echo "build: rc=$build_rc in $(( $(date +%s) - start )) s" >> "$summary"
if [ $build_rc -ne 0 ]; then tail -40 "$OUT/build.log"; cat "$summary"; exit 1; fi

# Tests run from a copy of tests/ outside the source tree so the installed package is imported.
work=$(mktemp -d)
cp -r tests benchmarks pyproject.toml "$work/"
cd "$work"
python3 -m pyhash.info >> "$summary" 2>&1

start=$(date +%s)
timeout 240 python3 -m pytest -q --maxfail=30 -m cuda tests > "$OUT/tests.log" 2>&1
echo "cuda tests: rc=$? in $(( $(date +%s) - start )) s: $(tail -1 "$OUT/tests.log")" >> "$summary"
grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -30 >> "$summary"

start=$(date +%s)
timeout 240 python3 -m pytest -q benchmarks/ --benchmark-only -k gpu -s > "$OUT/bench.log" 2>&1
echo "gpu benchmarks: rc=$? in $(( $(date +%s) - start )) s" >> "$summary"
sed -n '/^### /,$p' "$OUT/bench.log" >> "$summary"
cat "$summary"
