"""Programs written for `import sglang as sgl` (SGLang's README examples) and for the seed's API
(`SGLModel` + `@instruct`, `.run().text`) run with only the import changed."""
import re

import pytest

import nbinfer as sgl


@pytest.fixture
def default_backend(shared_llm):
    sgl.set_default_backend(shared_llm)
    yield shared_llm
    sgl.set_default_backend(None)


def test_sglang_multi_turn_question(default_backend):
    @sgl.function
    def multi_turn_question(s, question_1, question_2):
        s += sgl.system("You are a helpful assistant.")
        s += sgl.user(question_1)
        s += sgl.assistant(sgl.gen("answer_1", max_tokens=16))
        s += sgl.user(question_2)
        s += sgl.assistant(sgl.gen("answer_2", max_tokens=16))

    state = multi_turn_question.run(question_1="What is the capital of the United States?",
                                    question_2="List two local attractions.")
    roles = [m["role"] for m in state.messages()]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert state.messages()[3]["content"] == "List two local attractions."
    assert state.messages()[2]["content"] == state["answer_1"].lstrip()
    raw = [m["content"] for m in state.messages()]
    raw[2], raw[4] = state["answer_1"], state["answer_2"]       # messages() strips leading space
    rendered = default_backend.tokenizer.apply_chat_template(
        [{"role": m["role"], "content": c} for m, c in zip(state.messages(), raw)], tokenize=False)
    assert state.text() == rendered


def test_sglang_control_flow(default_backend):
    @sgl.function
    def control_flow(s, question):
        s += "To answer this question: " + question + ", "
        s += "I need to use a " + sgl.gen("tool", choices=["calculator", "web browser"]) + ". "
        if s["tool"] == "calculator":
            s += "The math expression is" + sgl.gen("expression", max_tokens=8)
        elif s["tool"] == "web browser":
            s += "The website url is" + sgl.gen("url", max_tokens=8)

    state = control_flow.run(question="What is 2 + 2?")
    assert state["tool"] in ("calculator", "web browser")
    assert ("expression" in state) == (state["tool"] == "calculator")
    assert ("url" in state) == (state["tool"] == "web browser")


def test_sglang_tip_suggestion_with_fork(default_backend):
    @sgl.function
    def tip_suggestion(s):
        s += (
            "Here are two tips for staying healthy: "
            "1. Balanced Diet. 2. Regular Exercise.\n\n"
        )
        forks = s.fork(2)
        for i, f in enumerate(forks):
            f += f"Now, expand tip {i + 1} into a paragraph:\n"
            f += sgl.gen("detailed_tip", max_tokens=16, stop="\n\n")
        s += "Tip 1:" + forks[0]["detailed_tip"] + "\n"
        s += "Tip 2:" + forks[1]["detailed_tip"] + "\n"
        s += "In summary" + sgl.gen("summary", max_tokens=8)

    state = tip_suggestion.run()
    assert "\n\n" not in state.text.split("Tip 1:")[1].split("Tip 2:")[0][:-1]
    assert state.text.endswith(state["summary"])
    assert state.stats.num_requests == 4        # prefix once, two forks, the summary


def test_sglang_batch_and_regex(default_backend):
    @sgl.function
    def text_qa(s, question):
        s += "Q: " + question + "\n"
        s += "A:" + sgl.gen("answer", stop="\n", max_tokens=12)

    states = text_qa.run_batch([{"question": "What is the capital of the United Kingdom?"},
                                {"question": "What is the capital of France?"},
                                {"question": "What is the capital of Japan?"}], progress_bar=True)
    assert all("\n" not in st["answer"] for st in states)

    @sgl.function
    def regex_gen(s):
        s += "Q: What is the IP address of the Google DNS servers?\n"
        s += "A: " + sgl.gen("answer", temperature=0, max_tokens=32,
                             regex=r"((25[0-5]|2[0-4]\d|[01]?\d\d?).){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)")

    assert re.fullmatch(r"((25[0-5]|2[0-4]\d|[01]?\d\d?).){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)",
                        regex_gen.run()["answer"])


def test_sglang_runtime_and_streaming(llama_dir):
    runtime = sgl.Runtime(model_path=str(llama_dir), num_kv_blocks=64, log_level="error")
    sgl.set_default_backend(runtime)
    try:
        @sgl.function
        def story(s):
            s += "Once upon a time"
            s += sgl.gen("rest", max_tokens=12, ignore_eos=True)

        state = story.run(stream=True)
        assert "".join(state.text_iter()) == state.text() == "Once upon a time" + state["rest"]
        assert runtime.get_tokenizer() is runtime.llm.tokenizer
    finally:
        runtime.shutdown()
    assert sgl.get_default_backend() is None and runtime.llm.engine is None


def test_seed_book_recommendation_with_sglmodel_and_instruct(llama_dir):
    # --- the seed's program; only the import line changed ---------------------------------------
    from nbinfer import SGLModel, instruct

    model = SGLModel(model_path=str(llama_dir), device="cpu")

    @instruct
    def book_recommendation(s, genre, reader_age):
        s += f"请推荐一本适合{reader_age}岁读者的{genre}书籍。"
        s.generate(name="book", max_tokens=24, temperature=0.7)
        s += "\n推荐理由:"
        s.generate(name="reason", max_tokens=32)
        s.return_(s["book"])

    result = book_recommendation.run(genre="科幻", reader_age=12)
    print(result.text)
    # -----------------------------------------------------------------------------------------------
    try:
        assert result.text.startswith("请推荐一本适合12岁读者的科幻书籍。" + result["book"] + "\n推荐理由:")
        assert result.text == result.text() and result.text.endswith(result["reason"])
        assert result.ret_value == result["book"]
        assert sgl.get_default_backend() is model.backend
    finally:
        model.shutdown()


def test_every_sgl_name_is_an_nbinfer_name():
    """nbinfer's SGL names are lang.api.__all__ itself (there was a second, shorter copy)."""
    import nbinfer
    from nbinfer.lang import api
    assert sgl.ChoicesDecision is api.ChoicesDecision and sgl.ChoicesSamplingMethod is api.ChoicesSamplingMethod
    assert all(getattr(nbinfer, name) is getattr(api, name) for name in api.__all__)
    assert set(api.__all__) <= set(nbinfer.__all__) and set(api.__all__) <= set(dir(nbinfer))
    star = {}
    exec("from nbinfer import *", star)
    assert {"LLM", "SamplingParams", "ChoicesDecision", "separate_reasoning"} <= set(star)
    with pytest.raises(AttributeError, match="module 'nbinfer' has no attribute 'no_such_name'"):
        nbinfer.no_such_name


# SGLang 0.5.2's public names that nbinfer does not have, and why: clients of servers and of hosted
# APIs (RuntimeEndpoint: remote SGL backends, a separate piece of work; Anthropic / LiteLLM / OpenAI /
# VertexAI), its server engine and the engine's options (Engine, ServerArgs: nbinfer.LLM and
# sgl.Runtime(model_path=..., **LLM options) are nbinfer's), and global_config (SGLang's server
# constants and interpreter switches, none of which mean anything here).
NOT_IN_NBINFER = {"Anthropic", "LiteLLM", "VertexAI", "Engine", "ServerArgs", "global_config"}


def test_sglang_frontend_names_nbinfer_lacks_are_the_listed_ones():
    sglang = pytest.importorskip("sglang")
    if sglang.__version__ != "0.5.2":
        pytest.skip(f"compared against sglang 0.5.2, found {sglang.__version__}")
    missing = {name for name in sglang.__all__ if not hasattr(sgl, name)}
    assert missing == NOT_IN_NBINFER
