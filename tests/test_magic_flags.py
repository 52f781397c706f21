"""Every magic parses its flags the same strict way (nbinfer.jupyter.magic_parser), misspelt flags name
the right one, and `%nbinfer load`'s flags are generated from the engine's config dataclass."""
import dataclasses
from dataclasses import dataclass

import pytest

pytest.importorskip("IPython")
from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

from nbinfer.engine import config as engine_config  # noqa: E402
from nbinfer.engine.config import EngineConfig  # noqa: E402
from nbinfer.flags import engine_flags  # noqa: E402
from nbinfer.jupyter import commands, session  # noqa: E402


@pytest.fixture(scope="module")
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbinfer")
    yield shell
    session.unload_llm()


def load_parser():
    return commands.subcommand_parser(commands.SUBCOMMANDS["load"])


def usage_error(fn, *args) -> str:
    with pytest.raises(UsageError) as e:
        fn(*args)
    assert "\n" not in str(e.value), str(e.value)
    return str(e.value)


# -- misspelt flags, in every magic -----------------------------------------------------------------

@pytest.mark.parametrize("kind, magic, line, hint", [
    ("cell", "generate", "--temprature 0.5", "unrecognized arguments: --temprature 0.5 (did you mean --temperature?)"),
    ("cell", "generate", "--max_tokens 5", "(did you mean --max-tokens?)"),
    ("cell", "generate", "--max 5", "(did you mean --max-tokens?)"),      # refused, but named
    ("cell", "generate", "--n 2", "(did you mean -n?)"),
    ("cell", "generate", "--sytem hi --outt r", "(did you mean --system for --sytem, --out for --outt?)"),
    ("cell", "sgl", "--max-token 3", "(did you mean --max-tokens?)"),
    ("line", "nbinfer", "load --num-kv-block 4", "(did you mean --num-kv-blocks?)"),
    ("line", "nbinfer", "load --attention_backend cpu", "(did you mean --attention-backend?)"),
    ("line", "nbinfer", "load --enforce-eagre", "(did you mean --enforce-eager?)"),
    ("line", "nbinfer", "dashboard --intervall 1", "(did you mean --interval?)"),
    ("line", "nbinfer", "bench --rep 2", "(did you mean --reps?)"),
    ("line", "nbinfer", "lod", "invalid choice: 'lod' (choose from load, "),
    ("line", "nbinfer", "lod", "did you mean load?"),
])
def test_a_misspelt_flag_names_the_right_one(ip, kind, magic, line, hint):
    run = ip.run_cell_magic if kind == "cell" else ip.run_line_magic
    msg = usage_error(run, magic, line, *(["x\n"] if kind == "cell" else []))
    assert msg.startswith("%%" + magic if kind == "cell" else "%" + magic), msg
    assert hint in msg, msg


@pytest.mark.parametrize("kind, magic, line, expected", [
    ("cell", "generate", "--help", "%%generate: the help is `%%generate?`"),
    ("line", "nbinfer", "load -h", "%nbinfer load: the help is `%nbinfer?`"),
    ("cell", "sgl", "-h", "%%sgl: the help is `%%sgl?`; usage: %%sgl [--out VAR]"),
])
def test_asking_for_help_points_to_the_magics_help(ip, kind, magic, line, expected):
    run = ip.run_cell_magic if kind == "cell" else ip.run_line_magic
    assert usage_error(run, magic, line, *(["x\n"] if kind == "cell" else [])).startswith(expected)


@pytest.mark.parametrize("kind, magic, line", [
    ("cell", "generate", "--bogus"),
    ("cell", "generate", "stray"),          # a stray value is not a typo of a flag
    ("line", "nbinfer", "load a b"),
    ("line", "nbinfer", "status --verbose"),
])
def test_no_suggestion_when_nothing_is_close(ip, kind, magic, line):
    run = ip.run_cell_magic if kind == "cell" else ip.run_line_magic
    msg = usage_error(run, magic, line, *(["x\n"] if kind == "cell" else []))
    assert "unrecognized arguments" in msg and "did you mean" not in msg, msg


# -- %nbinfer load: one flag per engine option ------------------------------------------------------

def test_every_engine_option_is_a_load_flag_with_its_default(ip, capsys):
    parser = load_parser()
    defaults = vars(parser.parse_line(""))
    flags = parser.flags()
    for f in dataclasses.fields(EngineConfig):
        if f.name == "model":
            continue
        name = engine_flags.flag(f.name)
        assert name in flags or "--no-" + name[2:] in flags, f.name
        assert defaults[f.name] == f.default, f.name
    ip.run_cell("%nbinfer?")
    shown = capsys.readouterr().out
    # help is the comment beside the field, continuation lines included
    assert "--block-size N" in shown and "tokens per KV block (default: 16)" in shown
    assert "--schedule-policy {fcfs,lpm,auto}" in shown and "fcfs otherwise" in " ".join(shown.split())
    assert "20% of RAM" in shown                     # a % in a comment survives argparse's formatting


def test_choices_come_from_the_engine_config(monkeypatch):
    parser = load_parser()
    for field, options in engine_flags.CHOICES.items():
        for option in options:
            assert getattr(parser.parse_line(f"{engine_flags.flag(field)} {option}"), field) == option
    assert engine_flags.CHOICES["attention_backend"] is engine_config.ATTENTION_BACKENDS
    assert parser.parse_line("--attention-backend cpu").attention_backend == "cpu"   # was refused
    assert parser.parse_line("--device cuda:1").device == "cuda:1"
    with pytest.raises(UsageError, match="invalid choice: 'auto:1'"):
        parser.parse_line("--device auto:1")
    # a backend added to the engine's one list is a valid choice at once
    monkeypatch.setitem(engine_flags.CHOICES, "attention_backend", engine_config.ATTENTION_BACKENDS + ("flash",))
    assert load_parser().parse_line("--attention-backend flash").attention_backend == "flash"


@dataclass(frozen=True)
class ExtendedConfig(EngineConfig):
    kv_offload_gib: float = 0.0          # GiB of KV blocks kept in host memory
                                         # when the device pool is full
    speculative: bool = False            # draft tokens with a smaller model
    draft_model: str | None = dataclasses.field(default=None, metadata={"help": "the draft model"})
    rope_scaling: dict | None = None     # API only: no flag for a dict


def test_a_new_engine_option_is_written_once(monkeypatch):
    """An option added to the config dataclass becomes a flag, with its type, default and help,
    without a line in the magics."""
    monkeypatch.setattr(engine_flags, "EngineConfig", ExtendedConfig)
    parser = load_parser()
    assert {"--kv-offload-gib", "--speculative", "--draft-model"} <= set(parser.flags())
    assert "--rope-scaling" not in parser.flags()
    help_text = " ".join(parser.format_help().split())
    assert ("--kv-offload-gib F GiB of KV blocks kept in host memory when the device pool is full "
            "(default: 0.0)") in help_text
    assert "--draft-model DRAFT_MODEL the draft model" in help_text
    args = parser.parse_line("--kv-offload-gib 1.5 --speculative --block-size 8")
    options = engine_flags.engine_options(args)
    assert options["kv_offload_gib"] == 1.5 and options["speculative"] is True and options["block_size"] == 8
    with pytest.raises(UsageError, match="argument --kv-offload-gib: expected a number, got 'lots'"):
        parser.parse_line("--kv-offload-gib lots")


def test_load_passes_every_option_to_the_engine(ip, llama_dir):
    ip.run_line_magic("nbinfer", f"load {llama_dir} --attention-backend cpu --device cpu --dtype float32 "
                                 "--block-size 8 --num-kv-blocks 32 --max-num-seqs 7 --max-num-batched-tokens 256 "
                                 "--max-model-len 200 --no-enable-prefix-caching --seed 3 --enforce-eager "
                                 "--schedule-policy fcfs --load-format dummy")
    cfg = session.current_llm().config
    assert (cfg.attention_backend, cfg.device, cfg.dtype, cfg.block_size, cfg.num_kv_blocks) == \
        ("cpu", "cpu", "float32", 8, 32)
    assert (cfg.max_num_seqs, cfg.max_num_batched_tokens, cfg.max_model_len, cfg.enable_prefix_caching) == \
        (7, 256, 200, False)
    assert (cfg.seed, cfg.enforce_eager, cfg.schedule_policy, cfg.load_format) == (3, True, "fcfs", "dummy")
    ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 16 --no-prefix-caching")   # the old name
    assert session.current_llm().config.enable_prefix_caching is False
    session.unload_llm()


def test_config_errors_name_the_flag():
    with pytest.raises(ValueError, match=r"^--max-num-seqs must be a positive integer, got 0$"):
        engine_flags.check_config(None, {"max_num_seqs": 0})
    with pytest.raises(ValueError, match=r"^--tensor-parallel-size=2 is not supported"):
        engine_flags.check_config(None, {"tensor_parallel_size": 2})
