"""The peer side of `nbinfer bench`: runs HF generate, vLLM or llama.cpp on a workload, in a
subprocess of whichever Python has that package.

These modules import only the standard library at the top (the peer library is imported inside its
runner), and worker.py is run by path (`python .../peer_side/worker.py`), so the peer's Python needs
neither nbinfer nor torch: a vLLM or llama.cpp virtual environment is enough.
"""
