#!/bin/sh
# The README's real-model tables: SmolLM2-135M-Instruct, nbinfer beside vLLM's CPU engine at the same
# dtype; in the fp32 single-stream run also llama.cpp (f32 GGUF) and HF generate. One `nbinfer bench`
# run per workload:dtype argument (default: all four), reps interleaved (REPS, default 3).
# llama.cpp and HF are left out of the batch runs (minutes per rep there; the batch goal is set against
# vLLM), and out of the bf16 runs (neither runs this model in bf16 here).
# PEERS: a folder with vllm-venv/, llama-venv/, smollm2-hf/ and gguf/ (how to build it: issue 14).
set -eu
PEERS=${PEERS:-/tmp/nbinfer-peers}
OUT=${OUT:-.}
REPS=${REPS:-3}
[ $# -gt 0 ] || set -- single:float32 single:bfloat16 batch:float32 batch:bfloat16
for run in "$@"; do
  workload=${run%%:*}
  dtype=${run#*:}
  extra=""
  [ "$run" = single:float32 ] && extra="--peer llama-cpp --peer hf"
  echo "== $workload $dtype, reps $REPS ($(uptime))"
  nbinfer bench --model "$PEERS/smollm2-hf" --workload "$workload" --dtype "$dtype" --reps "$REPS" \
    --peer vllm $extra --no-roofline \
    --peer-python "vllm=$PEERS/vllm-venv/bin/python" --peer-python "llama-cpp=$PEERS/llama-venv/bin/python" \
    --gguf "$PEERS/gguf/smollm2-135m-instruct-f32.gguf" --json "$OUT/bench-$workload-$dtype.json"
  echo "== done $workload $dtype ($(uptime))"
done
