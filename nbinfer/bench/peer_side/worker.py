"""A benchmark peer's process: `python worker.py`, then JSON lines on stdin, one reply line each.

    {"op": "load", "peer": "hf" | "vllm" | "llama-cpp", "model": ..., "dtype": ..., ...}
        -> {"ok": true, "load_s": ..., "dtype": ..., "version": ...}
    {"op": "run", "prompts": [[ids]], "output_lens": [n]}  -> {"ok": true, "result": {...}}
    {"op": "quit"}
Any failure -> {"ok": false, "error": "one line"}. Peer libraries print to stdout (vLLM's logger,
llama.cpp's C code), so replies go out on a private copy of stdout and fd 1 points at stderr.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback

# A script in the peer's own Python, which has no nbinfer: its runners are the modules beside it. Put
# this folder on the path itself: Python does not where PYTHONSAFEPATH (or -P) is set.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

RUNNERS = {"hf": ("hf_generate", "HFGenerate"), "vllm": ("vllm_engine", "VLLMEngine"),
           "llama-cpp": ("llama_cpp_runner", "LlamaCpp")}


def serve(requests, reply) -> None:
    runner = None
    for line in requests:
        msg = json.loads(line)
        if msg["op"] == "quit":
            return
        try:
            if msg["op"] == "load":
                module, cls = RUNNERS[msg["peer"]]
                start = time.monotonic()
                runner = getattr(__import__(module), cls)(msg)
                answer = {"ok": True, "load_s": time.monotonic() - start, **runner.info}
            elif msg["op"] == "run":
                answer = {"ok": True, "result": runner.run(msg["prompts"], msg["output_lens"])}
            else:
                answer = {"ok": False, "error": f"unknown op {msg['op']!r}"}
        except Exception as e:     # reported to the driver as one line; the traceback goes to the log
            traceback.print_exc()
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}".splitlines()[0]}
        reply.write(json.dumps(answer) + "\n")
        reply.flush()


def main() -> None:
    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)                  # whatever the peer prints lands in the log, not in the protocol
    sys.stdout = sys.stderr
    serve(sys.stdin, reply)


if __name__ == "__main__":
    main()
