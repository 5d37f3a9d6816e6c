#!/usr/bin/env bash
# One-shot GPU check for a lent GPU, H100 or H200 (see docs/performance.md): build, CUDA tests,
# GPU benchmarks, then compute-sanitizer over every CUDA kernel with whatever is left of a 9-minute
# budget. Run from the repo root on the GPU machine:   bash tools/gpu_check.sh
# Writes under $OUT (default ./gpu_out): build.log, tests.log, bench.log, memcheck.log,
# racecheck.log, summary.txt. About 5-9 minutes.
set -uo pipefail
script_start=$(date +%s)
budget_s=540
src=$PWD
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
timeout 360 python3 -m pip install --no-build-isolation --no-deps . > "$OUT/build.log" 2>&1
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

# compute-sanitizer over tools/cuda_smoke.py (each kernel once per code path, checked against the
# CPU), each tool only with the time left in the budget. Without the caching allocator every tensor
# is its own allocation, so an out-of-bounds access is not hidden inside a cached block.
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
for tool in memcheck racecheck; do
  left=$(( budget_s - ($(date +%s) - script_start) ))
  if [ -z "$sanitizer" ] || [ $left -lt 60 ]; then
    echo "$tool: skipped (${sanitizer:-no compute-sanitizer}; ${left} s left)" >> "$summary"
    continue
  fi
  start=$(date +%s)
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout $(( left < 240 ? left : 240 )) "$sanitizer" --tool $tool \
    --error-exitcode 99 python3 "$src/tools/cuda_smoke.py" > "$OUT/$tool.log" 2>&1
  rc=$?
  echo "$tool: rc=$rc in $(( $(date +%s) - start )) s (99: sanitizer errors, 1: mismatches, 124: timed out):" \
    "$(grep -c '^ok' "$OUT/$tool.log") cases ok, $(grep -c '^FAIL' "$OUT/$tool.log") failed;" \
    "$(grep -m1 'ERROR SUMMARY' "$OUT/$tool.log" || echo 'no error summary')" >> "$summary"
done
echo "total: $(( $(date +%s) - script_start )) s" >> "$summary"
cat "$summary"
