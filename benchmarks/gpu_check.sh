#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) under a hard time limit: one H100/H200, no network.
#
#   bash benchmarks/gpu_check.sh                 # ~5-7 minutes; writes benchmarks/results/gpu_check_<date>_<gpu>.txt
#   bash benchmarks/gpu_check.sh --dry-run       # CPU, seconds: the same code path without vLLM and CUDA
#   GPU_CHECK_LIMIT=600 bash benchmarks/gpu_check.sh --engine-options '{"enforce_eager": true}'
#
# Needs: pip install -e '.[hf,vllm]' (torch with CUDA, vLLM). Other arguments go to gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${GPU_CHECK_LIMIT:-480}
PY=${PYTHON:-python}
export TOKENIZERS_PARALLELISM=false
# the script stops starting new steps after --budget seconds (default 450); the hard limit is the backstop
set +e
timeout --signal=TERM --kill-after=20 "$LIMIT" "$PY" benchmarks/gpu_check.py "$@"
code=$?
set -e
if [ "$code" -eq 124 ] || [ "$code" -eq 137 ]; then
    echo "gpu_check: stopped after ${LIMIT}s (GPU_CHECK_LIMIT); the table above is incomplete" >&2
fi
exit "$code"
