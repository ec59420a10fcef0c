#!/bin/bash
# Issue 17: the quoted bad invocations, each with its exit code, stderr line count and tracebacks.
# Usage: benchmarks/fault_invocations.sh [CHECKOUT]   (needs the WebShop data: $OPID_GYM_DATA)
# every bad invocation: exit code and number of stderr lines, and whether a traceback
R=${1:-$(cd "$(dirname "$0")/.." && pwd)}
T=$(mktemp -d); printf '\x00\xff\xfe\x89garbage\x80' > $T/garbage.json; mkdir -p $T/badrun; cp $T/garbage.json $T/badrun/config.json
export PYTHONPATH=$R OPID_GYM_RESULTS=$T/results.sqlite
PY=${PYTHON:-python}
run() { out=$(timeout 120 $PY -m opid_gym.cli "$@" 2>&1 >/dev/null); rc=$?; n=$(printf '%s' "$out" | grep -c ''); tb=$(printf '%s' "$out" | grep -c Traceback); echo "rc=$rc lines=$n tb=$tb :: $*  :: $(printf '%s' "$out" | tail -1 | cut -c1-110)"; }
run eval --agent randon --env webshop --episodes 1
run eval --agent random --env webshop --episodes -3 --no-record
run eval --agent random --env webshop --episodes 0 --no-record
run eval --agent random --env webshop --episodes 1 --max-steps 0 --no-record
run run --learner grpo --env webshop --model tiny --preset smoke --set model.device=tpu9 --out $T/r1
run run --learner grpo --env webshop --model tiny --preset smoke --config $T/garbage.json --out $T/r2
run resume $T/badrun
