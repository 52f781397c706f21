"""Benchmark peers (HF generate, vLLM, llama.cpp), each in a subprocess of a Python that has it.

The driver speaks JSON lines to peer_side/worker.py (see there). A peer runs in its own process so
that its library (vLLM pins its own stack, llama-cpp-python is a native build) never shares an
interpreter with nbinfer, and can live in another virtual environment (--peer-python NAME=PATH).
Whatever a peer prints goes to a log file, whose tail is shown if the peer fails.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .metrics import RunResult
from .workloads import Workload

# peer name -> the module that must be importable in its Python
PEERS = {"hf": "transformers", "vllm": "vllm", "llama-cpp": "llama_cpp"}
WORKER = Path(__file__).with_name("peer_side") / "worker.py"


def parse_peer_options(items: list[str] | None, flag: str) -> dict[str, str]:
    """["vllm=/venv/bin/python", ...] -> {"vllm": "/venv/bin/python"} (--peer-python, --peer-dtype)."""
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or name not in PEERS or not value:
            raise ValueError(f"{flag} takes NAME=VALUE with NAME one of {', '.join(PEERS)}, got {item!r}")
        if flag == "--peer-python" and not os.access(value, os.X_OK):
            raise ValueError(f"--peer-python {name}: {value} is not an executable Python")
        out[name] = value
    return out


def peer_python(name: str, overrides: dict[str, str]) -> str:
    """The interpreter for a peer: the one given, else this one if the peer's package imports here."""
    if name in overrides:
        return overrides[name]
    if importlib.util.find_spec(PEERS[name]) is None:
        raise ValueError(f"--peer {name}: the {PEERS[name]} package is not importable in this Python "
                         f"({sys.executable}); install it or pass --peer-python {name}=/path/to/python")
    return sys.executable


class Peer:
    """One peer's worker process: load once, then run workloads on request."""

    def __init__(self, name: str, python: str, log_dir: Path | None = None):
        self.name = name
        log_dir = log_dir or Path(tempfile.gettempdir()) / "nbinfer-bench-peers"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([python, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, cwd=str(WORKER.parent),
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.info: dict = {}

    def _ask(self, msg: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            raise RuntimeError(f"peer {self.name} exited (code {self.proc.poll()}); the end of its log "
                               f"{self.log_path}:\n{self.log_tail()}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise ValueError(f"--peer {self.name}: {answer.get('error')} (log: {self.log_path})")
        return answer

    def log_tail(self, lines: int = 15) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def load(self, **job) -> dict:
        self.info = self._ask({"op": "load", "peer": self.name, **job})
        return self.info

    def run(self, workload: Workload) -> RunResult:
        res = self._ask({"op": "run", "prompts": workload.prompts, "output_lens": workload.output_lens})["result"]
        return RunResult.from_dict(res)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()
