"""The benchmark harness runs end to end and reports sane numbers (no timing assertions)."""
import json
import os
import sys
from pathlib import Path

import pytest

from nbinfer.bench.metrics import agreement
from nbinfer.bench.shapes import SHAPES, make_model_dir
from nbinfer.bench.workloads import make_workload
from nbinfer.cli import main

FAKES = Path(__file__).parent / "bench_fakes"     # stand-ins for vllm and llama_cpp (see its README)


def test_workloads_follow_their_definitions():
    mixed = make_workload("mixed", 50, 1000, seed=1)
    assert all(100 <= len(p) <= 1024 for p in mixed.prompts)
    assert all(100 <= n <= 1024 for n in mixed.output_lens)
    seed = make_workload("seed", 3, 1000)
    assert [len(p) for p in seed.prompts] == [2048] * 3 and seed.output_lens == [512] * 3
    assert [len(p) for p in make_workload("seed-8k", 2, 1000).prompts] == [8192] * 2
    shared = make_workload("shared-prefix", 5, 1000)
    assert shared.shared_prefix_len == 1024
    assert all(p[:1024] == shared.prompts[0][:1024] for p in shared.prompts)
    assert all(10 <= t < 1000 for p in mixed.prompts for t in p)
    batch = make_workload("batch", 32, 1000)
    assert all(200 <= len(p) <= 500 for p in batch.prompts) and batch.output_lens == [128] * 32
    single = make_workload("single", 5, 1000, chat_prompt=[7, 8, 9])
    assert single.prompts == [[7, 8, 9]] and single.output_lens == [256]       # one request, whatever n
    assert len(make_workload("single", 1, 1000).prompts[0]) == 40               # no chat template: random ids
    with pytest.raises(ValueError, match="unknown workload"):
        make_workload("nope", 1, 10)


def test_named_shapes_are_real_configs(tmp_path):
    from transformers import AutoConfig
    d = make_model_dir("Llama-2-7B", tmp_path)
    cfg = AutoConfig.from_pretrained(d)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (4096, 32, 11008)
    assert set(SHAPES) == {"tiny", "Qwen2.5-0.5B", "Llama-2-7B", "Llama-3-8B"}
    with pytest.raises(ValueError, match="unknown shape"):
        make_model_dir("GPT-5", tmp_path)


def test_bench_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["bench", "--shape", "tiny", "--workload", "shared-prefix", "--num-prompts", "3", "--scale", "0.05",
               "--reps", "1", "--max-num-seqs", "4", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| nbinfer" in printed and "| hf-generate" in printed and "| hf-generate (float32)" in printed
    data = json.loads(out.read_text())
    ours, theirs = data["rows"]         # HF generate is the default peer, run in its own process
    assert ours["system"] == "nbinfer" and theirs["system"] == "hf-generate"
    assert ours["output_tps"] > 0 and theirs["output_tps"] > 0 and data["ratio"] > 0
    assert theirs["load_s"] > 0 and data["hf_batch_size"] == 3
    assert ours["prefix_hit_rate"] > 0.3            # the common prefix is served from the cache
    assert ours["ttft_p50"] <= ours["e2e_p50"]


def _fake_peer_python(tmp_path) -> str:
    """A --peer-python that is this Python with the fake vllm / llama_cpp importable."""
    script = tmp_path / "fake-peer-python"
    script.write_text(f'#!/bin/sh\nPYTHONPATH="{FAKES}" exec "{sys.executable}" "$@"\n')
    script.chmod(0o755)
    return str(script)


def test_bench_runs_vllm_and_llama_cpp_peers_through_the_python_given(tmp_path, capsys):
    py, gguf, out = _fake_peer_python(tmp_path), tmp_path / "m.gguf", tmp_path / "r.json"
    gguf.write_bytes(b"GGUF")
    rc = main(["bench", "--shape", "tiny", "--workload", "batch", "--num-prompts", "3", "--scale", "0.05",
               "--reps", "2", "--max-num-seqs", "4", "--peer", "vllm", "--peer", "llama-cpp",
               "--peer-python", f"vllm={py}", "--peer-python", f"llama-cpp={py}", "--gguf", str(gguf),
               "--peer-dtype", "vllm=bfloat16", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| vllm (bfloat16)" in printed and "| llama.cpp (q4_1)" in printed    # the ratio table
    data = json.loads(out.read_text())
    assert [r["system"] for r in data["rows"]] == ["nbinfer", "vllm", "llama.cpp"]
    for row in data["rows"]:
        assert row["reps"] == 2 and row["output_tps"] > 0 and row["decode_tps"] > 0
    assert set(data["ratios"]) == {"vllm", "llama.cpp"}
    assert all(r["out_tps"] > 0 and r["ttft"] > 0 for r in data["ratios"].values())


def test_peer_runners_return_each_requests_tokens_in_order(tmp_path):
    """Through the worker process: every request gets its own output, of its own length, in order
    (the fakes count up from the prompt's last id, and fake vLLM renames request ids as vLLM does)."""
    from nbinfer.bench.peers import Peer
    from nbinfer.bench.workloads import Workload

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    wl = Workload("t", [[5, 6, 7], [40], [1, 2]], [3, 1, 4])
    for name in ("vllm", "llama-cpp"):
        peer = Peer(name, _fake_peer_python(tmp_path), log_dir=tmp_path)
        try:
            info = peer.load(model=str(tmp_path), dtype="float32", device="cpu", dummy=False, threads=1,
                             gguf=str(gguf), max_num_seqs=4)
            assert info["load_s"] >= 0 and "fake" in info["version"]
            res = peer.run(wl)
        finally:
            peer.close()
        assert res.token_ids == [[8, 9, 10], [41], [3, 4, 5, 6]], name
        assert res.output_tokens == 8 and res.input_tokens == 6 and len(res.ttft_s) == 3
        assert len(res.itl_s) == 2 and all(t <= e for t, e in zip(res.ttft_s, res.e2e_s))


def test_bench_bad_arguments_are_one_line_errors(tmp_path, capsys, monkeypatch):
    assert main(["bench", "--shape", "GPT-5", "--no-hf", "--reps", "1"]) == 2
    assert "unknown shape" in capsys.readouterr().err
    assert main(["bench", "--shape", "tiny", "--peer", "llama-cpp", "--peer-python",
                 f"llama-cpp={_fake_peer_python(tmp_path)}"]) == 2
    assert "--peer llama-cpp needs --gguf" in capsys.readouterr().err
    assert main(["bench", "--shape", "tiny", "--peer-python", "tgi=/usr/bin/python3"]) == 2
    assert "--peer-python takes NAME=VALUE" in capsys.readouterr().err
    assert main(["bench", "--shape", "tiny", "--peer-dtype", "vllm=int3"]) == 2
    assert "dtype must be" in capsys.readouterr().err
    if __import__("importlib").util.find_spec("vllm") is None:
        assert main(["bench", "--shape", "tiny", "--peer", "vllm"]) == 2
        assert "pass --peer-python vllm=" in capsys.readouterr().err
    # a peer that fails to load: its error in one line, naming its log (nbinfer is never loaded)
    monkeypatch.setenv("FAKE_PEER_FAIL", "1")
    assert main(["bench", "--shape", "tiny", "--peer", "vllm", "--peer-python", f"vllm={_fake_peer_python(tmp_path)}",
                 "--reps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fake vllm refuses to load" in err and "vllm.log" in err


def test_agreement_is_the_matching_share_of_each_output():
    assert agreement([[1, 2, 3, 4]], [[1, 2, 3, 4]]) == 1.0
    assert agreement([[1, 2, 3, 4], [5, 6]], [[1, 2, 9, 4], [7, 6]]) == 0.25     # (2/4 + 0/2) / 2
    assert agreement([[1, 2]], []) is None


def test_nbinfer_bench_magic_prints_the_table_and_shows_a_chart():
    pytest.importorskip("IPython")
    pytest.importorskip("matplotlib")
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbinfer")
    with capture_output() as out:
        saved, shell.display_pub = shell.display_pub, CapturingDisplayPublisher()
        try:
            shell.run_line_magic("nbinfer", "bench --shape tiny --workload mixed --num-prompts 2 --scale 0.05 "
                                            "--reps 1 --max-num-seqs 4")
            shown = shell.display_pub.outputs
        finally:
            shell.display_pub = saved
    assert "| nbinfer" in out.stdout and "| hf-generate" in out.stdout
    assert any("image/png" in o["data"] for o in shown)
    with pytest.raises(UsageError, match="%nbinfer bench"):
        shell.run_line_magic("nbinfer", "bench --workload nope")
    with pytest.raises(UsageError, match="--reps must be >= 1"):
        shell.run_line_magic("nbinfer", "bench --reps 0 --no-hf")


def test_cli_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("demo", "bench", "install-kernel"))


def test_the_wheel_lists_every_package_and_the_kernel_source():
    """pyproject.toml names its packages explicitly (kernels/ ships as nbinfer.kernels), so a new
    subpackage must be added there or a non-editable install lacks it."""
    import tomllib
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "nbinfer").rglob("__init__.py")}
    assert found | {"nbinfer.kernels"} <= listed
    # the CPU kernel's C++ source is data, compiled on the user's machine: it must ship too
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any((root / "kernels").glob(pattern) for pattern in data["nbinfer.kernels"])
    assert all(p.match(data["nbinfer.kernels"][0]) for p in (root / "kernels").rglob("*.cpp"))
