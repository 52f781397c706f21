"""GGUF loading on the real file: its metadata becomes a cached model folder (config, tokenizer, chat
template, eos ids equal to transformers' reading of the file), a folder holding one .gguf, one-line
errors for what cannot load, the `tokenizer=` option, and `%nbinfer load x.gguf`."""
import json
import shutil

import numpy as np
import pytest

from nbinfer import LLM, SamplingParams
from nbinfer.models import gguf_file
from nbinfer.models.loader import resolve_model_path
from nbinfer.models.tokenizer import load_tokenizer
from real_model import real_gguf

TEXTS = ["The quick brown fox jumps over the lazy dog.", "请解释量子计算的基本原理。",
         "def reverse(s):\n    return s[::-1]\n", "  leading spaces,\ttabs and émojis 🙂", "<|im_start|>user"]


@pytest.fixture(scope="module")
def gguf():
    return real_gguf()


@pytest.fixture(scope="module")
def folder(gguf):
    return resolve_model_path(str(gguf))


def patched_copy(src, dst, tensor=None, tensor_type=None, architecture=None):
    """A copy of a GGUF file with one tensor's type or the architecture name changed in place (same
    byte length), through the gguf library's read-write mapping."""
    from gguf import GGUFReader
    shutil.copyfile(src, dst)
    reader = GGUFReader(dst, "r+")
    if tensor is not None:
        info = next(t for t in reader.tensors if t.name == tensor)
        info.field.parts[4][0] = tensor_type
    if architecture is not None:
        value = reader.fields["general.architecture"].parts[-1]
        assert len(value) == len(architecture)
        value[:] = np.frombuffer(architecture.encode(), dtype=np.uint8)
    reader.data.flush()
    return dst


def test_metadata_becomes_a_cached_model_folder(gguf, folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 30
    assert (config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]) == (576, 9, 3)
    assert config["vocab_size"] == 49152 and config["tie_word_embeddings"] is True
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == [2]
    assert gguf_file.source_file(folder) == gguf.resolve()
    # made once: loading again reuses the folder as it is
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert resolve_model_path(gguf) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


def test_tokenizer_and_chat_template_equal_transformers_reading_of_the_file(gguf, folder):
    from transformers import AutoTokenizer
    theirs = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    ours = load_tokenizer(folder)
    for text in TEXTS:
        assert ours.encode(text) == theirs.encode(text), text
        assert ours.decode(theirs.encode(text)) == theirs.decode(theirs.encode(text))
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    assert ours.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
        theirs.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert (ours.eos_token, ours.bos_token, ours.eos_token_id) == (theirs.eos_token, theirs.bos_token, 2)
    # the `tokenizer=` option's string form resolves a .gguf file the same way
    assert load_tokenizer(str(gguf)).encode(TEXTS[1]) == theirs.encode(TEXTS[1])


def test_a_folder_holding_one_gguf_loads_it_and_two_is_an_error(gguf, folder, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / gguf.name).symlink_to(gguf)
    assert resolve_model_path(one) == folder          # the same file: the same cached folder
    (one / "other.gguf").symlink_to(gguf)
    with pytest.raises(ValueError, match=r"holds 2 \.gguf files \(SmolLM2-135M-Instruct\.Q4_1\.gguf, "
                                         r"other\.gguf\); pass the one to load"):
        resolve_model_path(one)


def test_a_tensor_type_the_library_cannot_dequantize_is_one_error_naming_it(gguf, tmp_path, monkeypatch):
    from gguf import GGMLQuantizationType
    monkeypatch.setenv("NBINFER_CACHE_DIR", str(tmp_path / "cache"))
    bad = patched_copy(gguf, tmp_path / "bad.gguf", tensor="blk.0.attn_norm.weight",
                       tensor_type=GGMLQuantizationType.I32)   # same bytes as its F32, no dequantizer
    with pytest.raises(ValueError) as e:
        LLM(str(bad), num_kv_blocks=8)
    assert str(e.value) == (f"the GGUF file {bad} stores tensor blk.0.attn_norm.weight as I32, which the gguf "
                            "library cannot dequantize")
    assert not list((tmp_path / "cache" / "gguf").iterdir())   # no half-made folder is left behind


def test_an_architecture_nbinfer_lacks_is_one_error(gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("NBINFER_CACHE_DIR", str(tmp_path / "cache"))
    bad = patched_copy(gguf, tmp_path / "bloom.gguf", architecture="bloom")
    with pytest.raises(ValueError, match=f"GGUF file {bad}") as e:
        LLM(str(bad), num_kv_blocks=8)
    assert "\n" not in str(e.value) and "bloom" in str(e.value)


def test_a_folder_whose_gguf_is_gone_is_one_error(folder, tmp_path):
    copy = tmp_path / "derived"
    shutil.copytree(folder, copy)
    source = json.loads((copy / gguf_file.SOURCE_FILE).read_text())
    (copy / gguf_file.SOURCE_FILE).write_text(json.dumps({**source, "path": str(tmp_path / "moved.gguf")}))
    with pytest.raises(ValueError, match=r"moved\.gguf behind .* is gone"):
        LLM(str(copy), num_kv_blocks=8)


def test_missing_gguf_path_is_one_error():
    with pytest.raises(ValueError, match=r"^model path 'no/such/model\.gguf' does not exist$"):
        LLM("no/such/model.gguf")


def test_tokenizer_option_takes_the_tokenizer_from_elsewhere(llama_dir, tmp_path):
    bare = tmp_path / "weights-only"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(llama_dir / f, bare / f)
    with pytest.raises(ValueError, match="cannot load a tokenizer"):
        LLM(str(bare), num_kv_blocks=16)
    with LLM(str(bare), tokenizer=str(llama_dir), num_kv_blocks=16) as llm, \
            LLM(str(llama_dir), num_kv_blocks=16) as whole:
        params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
        assert llm.generate("The quick brown fox", params)[0].outputs[0].token_ids == \
            whole.generate("The quick brown fox", params)[0].outputs[0].token_ids


def test_nbinfer_load_takes_a_gguf_file(gguf):
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    from nbinfer.jupyter import session
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbinfer")
    try:
        ip.run_line_magic("nbinfer", f"load {gguf} --num-kv-blocks 64")
        llm = session.current_llm()
        assert llm.stats().model == str(gguf)
        out = llm.chat([{"role": "user", "content": "What is the capital of France?"}],
                       SamplingParams(temperature=0, max_tokens=16))[0].outputs[0]
        assert "Paris" in out.text
    finally:
        session.unload_llm()
