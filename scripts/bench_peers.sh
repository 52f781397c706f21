#!/bin/sh
# The README's real-model tables: SmolLM2-135M-Instruct, nbinfer beside vLLM's CPU engine at the same
# dtype, llama.cpp (f32 GGUF beside fp32, Q4_1 beside bf16) and HF generate (fp32, single only), one
# `nbinfer bench` run per (workload, dtype), reps interleaved. llama.cpp and HF are left out of the batch
# runs: they take minutes per rep there, and the batch goal is set against vLLM.
# PEERS: a folder with vllm-venv/, llama-venv/, smollm2-hf/ and gguf/ (how to build it: issue 14).
set -eu
PEERS=${PEERS:-/tmp/nbinfer-peers}
OUT=${OUT:-.}
REPS=${REPS:-3}
for workload in single batch; do
  for dtype in float32 bfloat16; do
    if [ "$dtype" = float32 ]; then gguf=smollm2-135m-instruct-f32.gguf; else gguf=SmolLM2-135M-Instruct.Q4_1.gguf; fi
    extra=""
    [ "$workload" = single ] && extra="--peer llama-cpp"
    [ "$workload" = single ] && [ "$dtype" = float32 ] && extra="$extra --peer hf"
    echo "== $workload $dtype ($(uptime))"
    nbinfer bench --model "$PEERS/smollm2-hf" --workload "$workload" --dtype "$dtype" --reps "$REPS" \
      --peer vllm $extra --no-roofline \
      --peer-python "vllm=$PEERS/vllm-venv/bin/python" --peer-python "llama-cpp=$PEERS/llama-venv/bin/python" \
      --gguf "$PEERS/gguf/$gguf" --json "$OUT/bench-$workload-$dtype.json"
  done
done
