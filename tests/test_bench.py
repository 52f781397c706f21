"""The benchmark harness runs end to end and reports sane numbers (no timing assertions)."""
import json

import pytest

from nbinfer.bench.shapes import SHAPES, make_model_dir
from nbinfer.bench.workloads import make_workload
from nbinfer.cli import main


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
    assert "| nbinfer" in printed and "| hf-generate" in printed and "nbinfer / HF generate" in printed
    data = json.loads(out.read_text())
    ours, theirs = data["rows"]
    assert ours["system"] == "nbinfer" and theirs["system"] == "hf-generate"
    assert ours["output_tps"] > 0 and theirs["output_tps"] > 0 and data["ratio"] > 0
    assert ours["prefix_hit_rate"] > 0.3            # the common prefix is served from the cache
    assert ours["ttft_p50"] <= ours["e2e_p50"]


def test_bench_bad_arguments_are_one_line_errors(capsys):
    assert main(["bench", "--shape", "GPT-5", "--no-hf", "--reps", "1"]) == 2
    assert "unknown shape" in capsys.readouterr().err


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
