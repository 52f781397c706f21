"""The CPU kernels (cpu/*.cpp): compiled once per machine into one shared library, loaded with ctypes.

One library, so its kernels share one pool of worker threads (cpu/thread_pool.h). It is compiled
with the system C++ compiler (CXX, else c++/g++/clang++) with -march=native into ~/.cache/nbinfer
(or $NBINFER_CACHE_DIR), keyed by the sources, the flags, the compiler and this CPU's feature flags,
so a shared home directory never hands one machine another's binary, and a later load reuses it
(a build takes ~10-20 s; loading the cached library takes milliseconds). NBINFER_CPU_KERNELS=0 turns
the kernels off: the engine then runs its torch code, slower, and says so once.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

log = logging.getLogger("nbinfer")

SOURCE_DIR = Path(__file__).with_name("cpu")
FLAGS = ["-O3", "-ffast-math", "-fPIC", "-std=c++17", "-pthread"]
# Linked apart, without -ffast-math: given at link time it adds crtfastmath.o (GCC < 13 even with
# -shared), whose constructor turns on flush-to-zero for the loading process, so the user's own numpy
# and torch code would silently flush subnormals to zero once nbinfer ran on a CPU.
LINK_FLAGS = ["-shared", "-pthread"]
_lock = threading.Lock()
_loaded: dict[str, object] = {}


def _compiler() -> str | None:
    return os.environ.get("CXX") or next(filter(None, map(shutil.which, ("c++", "g++", "clang++"))), None)


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    root = os.environ.get("NBINFER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nbinfer")
    return Path(root) / "cpu-kernels"


def _build(cxx: str) -> Path:
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
    sources = sorted(SOURCE_DIR.glob("*.cpp"))
    text = b"\0".join(p.name.encode() + b"\0" + p.read_bytes() for p in sorted(SOURCE_DIR.glob("*.[ch]*")))
    errors = []
    for arch in (["-march=native"], []):       # some compilers/targets reject -march=native
        key = hashlib.sha256(b"\0".join([text, " ".join(FLAGS + arch + LINK_FLAGS).encode(), version.encode(),
                                         _cpu_flags().encode()])).hexdigest()[:16]
        out = _cache_dir() / f"nbinfer-cpu-{key}.so"
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            tmp_out = Path(tmp) / out.name
            objects = [Path(tmp) / f"{src.stem}.o" for src in sources]
            commands = [[cxx, *FLAGS, *arch, f"-I{SOURCE_DIR}", "-c", str(src), "-o", str(obj)]
                        for src, obj in zip(sources, objects)]
            commands.append([cxx, *LINK_FLAGS, *map(str, objects), "-o", str(tmp_out)])
            for command in commands:
                proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
                if proc.returncode != 0:
                    break
            if proc.returncode == 0:
                os.replace(tmp_out, out)        # atomic: a concurrent build never sees half a file
                return out
            errors.append(proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"])
    raise RuntimeError(f"{cxx} failed: {errors}")


def library():
    """The compiled library (ctypes.CDLL), or None (with the reason logged once) where it cannot be built."""
    with _lock:
        if "lib" in _loaded:
            return _loaded["lib"]
        lib = None
        if os.environ.get("NBINFER_CPU_KERNELS", "1") == "0":
            log.info("NBINFER_CPU_KERNELS=0: the CPU kernels are off; the engine runs its torch code")
        elif (cxx := _compiler()) is None:
            log.warning("no C++ compiler found (set CXX): the CPU kernels are off; the engine runs its slower torch code")
        else:
            try:
                lib = ctypes.CDLL(str(_build(cxx)))
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                log.warning("could not build the CPU kernels (%s): the engine runs its slower torch code", e)
                lib = None
        _loaded["lib"] = lib
        return lib
