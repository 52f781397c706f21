"""The CPU backend's decode-attention kernel (cpu/paged_decode.cpp): built once per machine, loaded
with ctypes.

Why C++ and not torch ops: a decode step's attention is one small GEMM pair per sequence, so a torch
loop pays Python and dispatch overhead per sequence and runs on one core (each OpenMP region entered
from the engine thread costs tens of microseconds, more than the op). The kernel runs every sequence
of a step in one call, on all the engine's threads, and releases the GIL while it does. There is no
maintained library for paged attention on CPU for current torch, so it is ours; its reference is the
torch loop in nbinfer/engine/attention/cpu_backend.py, which also serves wherever the kernel is not built.

The shared library is compiled with the system C++ compiler (CXX, else c++/g++/clang++) with
-march=native into ~/.cache/nbinfer (or $NBINFER_CACHE_DIR), keyed by the source, the flags, the
compiler and this CPU's feature flags, so a shared home directory never hands one machine another's
binary. NBINFER_CPU_KERNELS=0 turns it off.
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

import torch

log = logging.getLogger("nbinfer")

SOURCE = Path(__file__).with_name("cpu") / "paged_decode.cpp"
FLAGS = ["-O3", "-ffast-math", "-fPIC", "-shared", "-std=c++17", "-pthread"]
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
    source = SOURCE.read_bytes()
    errors = []
    for arch in (["-march=native"], []):       # some compilers/targets reject -march=native
        key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS + arch).encode(), version.encode(),
                                         _cpu_flags().encode()])).hexdigest()[:16]
        out = _cache_dir() / f"paged_decode-{key}.so"
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            tmp_out = Path(tmp) / out.name
            proc = subprocess.run([cxx, *FLAGS, *arch, str(SOURCE), "-o", str(tmp_out)],
                                  capture_output=True, text=True, timeout=300)
            if proc.returncode == 0:
                os.replace(tmp_out, out)        # atomic: a concurrent build never sees half a file
                return out
            errors.append(proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"])
    raise RuntimeError(f"{cxx} failed: {errors}")


def load():
    """The compiled kernel, or None (with the reason logged once) where it cannot be built here."""
    with _lock:
        if "lib" in _loaded:
            return _loaded["lib"]
        lib = None
        if os.environ.get("NBINFER_CPU_KERNELS", "1") == "0":
            log.info("NBINFER_CPU_KERNELS=0: the CPU backend uses its torch decode loop")
        elif (cxx := _compiler()) is None:
            log.warning("no C++ compiler found (set CXX): the CPU backend uses its slower torch decode loop")
        else:
            try:
                lib = ctypes.CDLL(str(_build(cxx)))
                fn = lib.nbinfer_paged_decode_f32
                fn.restype = None
                fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int] * 4 + [ctypes.c_int64] + [ctypes.c_int] * 3
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                log.warning("could not build the CPU decode-attention kernel (%s): the CPU backend uses "
                            "its slower torch decode loop", e)
                lib = None
        _loaded["lib"] = lib
        return lib


def supports(q: torch.Tensor, head_dim: int) -> bool:
    """The kernel's cases: fp32 on the CPU, head_dim a multiple of 16 (its vector width)."""
    return q.dtype == torch.float32 and q.device.type == "cpu" and head_dim % 16 == 0


def paged_decode(lib, qs: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                 seq_lens: torch.Tensor, out: torch.Tensor, block_size: int, threads: int) -> None:
    """out[i] = softmax(qs[i] K_i) V_i for every decode sequence i, in one call.
    qs, out [B, Hk, G, D] (qs pre-scaled); k_cache [Hk, D, S]; v_cache [Hk, S, D];
    block_tables [B, W] int32; seq_lens [B] int32. All contiguous fp32 / int32 CPU tensors."""
    b, hk, g, d = qs.shape
    for t in (qs, k_cache, v_cache, block_tables, seq_lens, out):
        assert t.is_contiguous() and t.device.type == "cpu"
    assert block_tables.dtype == seq_lens.dtype == torch.int32 and k_cache.shape == (hk, d, v_cache.shape[1])
    lib.nbinfer_paged_decode_f32(qs.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), block_tables.data_ptr(),
                                 seq_lens.data_ptr(), out.data_ptr(), b, hk, g, d, k_cache.shape[2],
                                 block_tables.shape[1], block_size, threads)
