#!/usr/bin/env bash
# The GPU check (issues 19 and 24) on one lent GPU, in <= 8 min: python -m benchmarks.gpu_check.
#
# The lent machine's image has jax, flax, optax, orbax, torch, transformers but
# not ml_collections: bring its wheel (pure Python; absl-py and PyYAML, which
# it needs, come with orbax and transformers there). On this machine, once:
#
#   pip download ml-collections --no-deps -d .whl        # .whl/ is git-ignored
#
# then, through the device tool (from the repository root):
#
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
#
# It writes benchmarks/results/gpu-<n>x-<device>.json and .md (rewritten after
# every figure, so a timeout still leaves what was measured) and, when $OUT is
# set (the device tool sets it), into $OUT as well, so they come back; prints the .md. Extra arguments go to the module
# (--quick, --budget-s 300, --skip hf, --out PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import ml_collections" 2>/dev/null; then
  if ls .whl/ml_collections-*.whl >/dev/null 2>&1; then
    "$PY" -m pip install --quiet --no-index --no-deps .whl/ml_collections-*.whl
  else
    echo "gpu_check.sh: ml_collections is missing and no .whl/ml_collections-*.whl was carried" \
         "(pip download ml-collections --no-deps -d .whl)" >&2
    exit 2
  fi
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false    # torch shares the card
copy=()
[ -n "${OUT:-}" ] && copy=(--copy-to "$OUT")  # the device tool's folder, written as it goes
status=0
"$PY" -m benchmarks.gpu_check ${copy[@]+"${copy[@]}"} "$@" || status=$?
[ -n "${OUT:-}" ] && cat "$OUT"/*.md 2>/dev/null || true
exit $status
