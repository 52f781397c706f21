"""Where a program's requests go: the backend registry, the default and fallback backends, the
sampling defaults run() and run_batch() share, and the language's one-way imports."""
import ast
import threading
import time
from pathlib import Path

import pytest

import nbinfer as sgl
from nbinfer.lang.backends import GenResult, as_backend, backend_kinds, base, default, register_backend
from nbinfer.lang.backends import register_fallback_backend
from nbinfer.lang.errors import ProgramCancelled, SglError
from test_sgl_runtime import ScriptedBackend

LANG = Path(sgl.__file__).parent / "lang"


@pytest.fixture
def isolated(monkeypatch):
    """A registry and fallback list of this test's own; no default backend."""
    monkeypatch.setattr(base, "_KINDS", dict(base._KINDS))
    monkeypatch.setattr(default, "_fallbacks", [])
    sgl.set_default_backend(None)
    yield
    sgl.set_default_backend(None)


@sgl.function
def hello(s):
    s += "Hello" + sgl.gen("x")


def test_a_fallback_backend_serves_runs_that_name_none(isolated):
    offered = [None]
    calls = []

    def notebook_engine():
        calls.append(1)
        return offered[0]

    register_fallback_backend(notebook_engine)
    register_fallback_backend(notebook_engine)          # again: still one fallback
    with pytest.raises(SglError, match="no model to run the program on"):
        hello.run()
    assert len(calls) == 1

    offered[0] = fallback = ScriptedBackend()
    assert hello.run().text == "Hello<1>" and fallback.prompts == ["Hello"]
    # the default backend and run(backend=...) come first
    sgl.set_default_backend(chosen := ScriptedBackend())
    hello.run()
    explicit = ScriptedBackend()
    hello.run(backend=explicit)
    assert (len(fallback.prompts), len(chosen.prompts), len(explicit.prompts)) == (1, 1, 1)


class Client:
    """Stands for a remote server's client object that a registered backend kind serves."""


def test_a_registered_kind_wraps_the_objects_it_serves(isolated):
    @register_backend("scripted")
    class ClientBackend(ScriptedBackend):
        serves = "a test Client"

        @classmethod
        def wrap(cls, obj):
            return cls() if isinstance(obj, Client) else None

    assert list(backend_kinds()) == ["engine", "sglang", "openai", "scripted"] and ClientBackend.kind == "scripted"
    sgl.set_default_backend(Client())
    backend = sgl.get_default_backend()
    assert isinstance(backend, ClientBackend)
    assert hello.run().text == "Hello<1>" and backend.prompts == ["Hello"]
    assert as_backend(backend) is backend                # a Backend, registered or not, is itself

    with pytest.raises(ValueError, match="'engine' is already registered: EngineBackend"):
        register_backend("engine")(ClientBackend)
    with pytest.raises(TypeError, match="decorates a Backend subclass"):
        register_backend("client")(Client)
    with pytest.raises(SglError) as info:
        sgl.set_default_backend(42)
    assert str(info.value) == ("a backend must be an sgl.Runtime, an nbinfer.LLM, a RemoteLLM (nbinfer.server), "
                               "a test Client or a Backend, got int")


def test_server_info_and_flush_cache_ask_the_backend(isolated, shared_llm):
    assert sgl.get_server_info() is None and sgl.flush_cache() is False       # no backend anywhere
    assert sgl.get_server_info(ScriptedBackend()) == {"backend": "ScriptedBackend"}
    info = sgl.get_server_info(shared_llm)
    stats = shared_llm.stats()
    assert (info["model"], info["max_model_len"]) == (stats.model, stats.max_model_len)
    assert sgl.flush_cache(shared_llm) is True


def test_run_and_run_batch_take_the_same_sampling_defaults(isolated):
    @sgl.function
    def answer(s, question):
        s += question + sgl.gen("a")

    scripted = ScriptedBackend()
    st = answer.run("why?", backend=scripted, max_new_tokens=5, temperature=0.25)
    batch = answer.run_batch([{"question": "why?"}], backend=scripted, max_new_tokens=5, temperature=0.25)
    assert st.get_meta_info("a") == batch[0].get_meta_info("a") == {"max_tokens": 5, "temperature": 0.25}
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\): question"):
        answer.run_batch([{}], backend=scripted, question="why?")


def _lang_modules() -> dict[str, Path]:
    return {".".join(("nbinfer", "lang", *p.relative_to(LANG).with_suffix("").parts)).removesuffix(".__init__"): p
            for p in LANG.rglob("*.py")}


def _imports(name: str, path: Path, known) -> list[tuple[str, bool]]:
    """(imported nbinfer.lang module, imported at module level) for each import in the file."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base_name = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base_name = f"{parent}.{base_name}" if base_name else parent
            targets = [f"{base_name}.{a.name}" for a in node.names if f"{base_name}.{a.name}" in known] or [base_name]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found += [(t, id(node) in top) for t in targets if t in known and t != name]
    return found


def test_the_language_imports_one_way():
    modules = _lang_modules()
    graph = {}
    for name, path in modules.items():
        edges = _imports(name, path, modules)
        local = [target for target, at_top in edges if not at_top]
        assert not local, f"{name} imports {local} inside a function: import at the top, one way"
        graph[name] = {target for target, _ in edges}
    done, stack = set(), []

    def visit(module):
        if module in stack:
            raise AssertionError("import circle: " + " -> ".join(stack[stack.index(module):] + [module]))
        if module in done:
            return
        stack.append(module)
        for target in sorted(graph[module]):
            visit(target)
        stack.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    # api.py is the facade on top: only the package imports it
    assert [m for m, targets in graph.items() if "nbinfer.lang.api" in targets] == ["nbinfer.lang"]


class RemoteRequest:
    """What a remote backend tracks for a request in flight: only cancel()."""

    def __init__(self):
        self.cancelled = threading.Event()

    def cancel(self):
        self.cancelled.set()


class RemoteLikeBackend(ScriptedBackend):
    """Streams until the program is cancelled, as a remote server's response would."""

    def __init__(self):
        super().__init__()
        self.requests = []

    def generate(self, prompt, req, run, on_delta=None):
        request = RemoteRequest()
        token = run.track(request)
        self.requests.append(request)
        try:
            request.cancelled.wait(30)
            run.check()
        finally:
            run.untrack(token)
        return GenResult("unreachable")


def test_cancelling_a_program_aborts_a_non_engine_backends_requests(isolated):
    remote = RemoteLikeBackend()
    st = hello.run(backend=remote, stream=True)
    deadline = time.monotonic() + 30
    while not remote.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    st.cancel()
    assert isinstance(st.error(), ProgramCancelled) and remote.requests[0].cancelled.is_set()
    assert st.stats.cancelled_requests == 1


def test_a_request_sent_as_its_program_is_cancelled_is_aborted_at_once(shared_llm):
    """A fork or run_batch worker may pass run.check() just before the program is cancelled and send
    its request after: registering it (track) aborts it there, and it counts as cancelled."""
    from nbinfer import SamplingParams
    from nbinfer.lang.context import ProgramRun
    from nbinfer.lang.sampling import RunDefaults
    run = ProgramRun(ScriptedBackend(), RunDefaults.make())
    run.check()
    run.cancel()
    handle = shared_llm.submit("Once upon a time", SamplingParams(max_tokens=400, ignore_eos=True))
    token = run.track(handle)
    assert handle.done() and handle.result().outputs[0].finish_reason == "abort"
    run.untrack(token)
    remote = RemoteRequest()
    run.untrack(run.track(remote))
    assert remote.cancelled.is_set() and run.stats.cancelled_requests == 2
    with pytest.raises(ProgramCancelled):
        run.check()
