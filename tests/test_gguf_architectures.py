"""GGUF files of every architecture nbinfer loads from GGUF, written from the tiny test models as
llama.cpp lays them out (tests/gguf_writer.py): stored in F32 they must give exactly the original
model's greedy output (config, tensor names, Llama's q/k permutation, biases, q/k norms, tied and untied
embeddings, a head size transformers would not read); stored quantized, the output of transformers'
own loading of the same file."""
import pytest

from gguf_writer import write_gguf
from hf_reference import HFReference, assert_greedy_equal
from nbinfer import LLM, SamplingParams

PROMPTS = ["The quick brown fox", "请解释量子计算的基本原理", "def generate(prompt"]
PARAMS = SamplingParams(temperature=0, max_tokens=16, ignore_eos=True, logprobs=0)
# quantized types the gguf library can also write, one per tensor kind (tiny rows: 32-element blocks)
QUANTIZED = {"attn_q": "Q8_0", "attn_k": "Q4_0", "attn_v": "Q5_1", "attn_output": "Q4_1", "ffn_gate": "Q5_0",
             "ffn_up": "F16", "ffn_down": "BF16", "token_embd": "Q8_0", "output": "Q8_0"}


def greedy_equals(llm, ref, label):
    outs = llm.generate(PROMPTS, PARAMS)
    compared = sum(assert_greedy_equal(ref, o.prompt_token_ids, o.outputs[0].token_ids, o.outputs[0].logprobs,
                                       f"{label}:{o.prompt!r}") for o in outs)
    assert compared >= 0.75 * 16 * len(PROMPTS)


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "qwen3"])
def test_f32_gguf_equals_the_original_model(family, model_dir, hf_ref, tmp_path, monkeypatch):
    monkeypatch.setenv("NBINFER_CACHE_DIR", str(tmp_path / "cache"))
    path = write_gguf(model_dir(family), tmp_path / f"{family}.gguf", family)
    with LLM(str(path), num_kv_blocks=64) as llm:
        assert llm.stats().model == str(path)
        greedy_equals(llm, hf_ref(family), family)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_quantized_gguf_equals_transformers_reading_of_it(family, model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NBINFER_CACHE_DIR", str(tmp_path / "cache"))
    kinds = lambda name, shape: QUANTIZED.get(name.split(".")[-2], "F32") if len(shape) == 2 else "F32"
    path = write_gguf(model_dir(family), tmp_path / f"{family}-q.gguf", family, kinds)
    from gguf import GGUFReader
    stored = {t.tensor_type.name for t in GGUFReader(path).tensors}
    assert {"Q8_0", "Q4_0", "Q5_1", "Q4_1", "Q5_0", "F16", "BF16", "F32"} <= stored
    ref = HFReference(tmp_path, gguf_file=path.name)
    with LLM(str(path), num_kv_blocks=64) as llm:
        greedy_equals(llm, ref, family)
