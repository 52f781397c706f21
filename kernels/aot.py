"""Ahead-of-time compilation of the Triton kernels for a GPU this machine need not have.

`recording()` stands a recorder in for every @triton.jit kernel of the given modules, so calling a
launcher (paged_decode_attention, rms_norm, ...) with CPU tensors records what it would launch: the
kernel, each argument's type and alignment specialisation (as Triton's JIT derives them), the
constexprs and num_warps / num_stages. `compile_launch()` then compiles one recorded launch with
triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32)): ptxas and cuobjdump ship inside
the triton wheel, so neither a GPU nor a CUDA toolkit is needed. Registers, shared memory and the
stack frame (a non-zero stack in a Triton kernel is register spills) come from the cubin.
"""
from __future__ import annotations

import re
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import JITFunction, native_specialize_impl

_LAUNCH_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg")


@dataclass(frozen=True)
class Launch:
    """One kernel launch as Triton's JIT would specialise it."""
    module: str                              # where the kernel lives (to find it again in a worker process)
    kernel: str
    signature: tuple[tuple[str, str], ...]   # (argument, type): "*bf16", "i32", "fp32", "constexpr"
    constexprs: tuple[tuple[str, object], ...]
    aligned: tuple[str, ...]                 # arguments specialised as divisible by 16
    options: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        consts = ", ".join(f"{k}={v}" for k, v in self.constexprs)
        dtypes = sorted({t[1:] for _, t in self.signature if t.startswith("*")})
        return f"{self.kernel}[{'/'.join(dtypes)}]({consts}; {', '.join(f'{k}={v}' for k, v in self.options)})"


def _launch(kernel: JITFunction, args: tuple, kwargs: dict) -> Launch:
    from triton.backends.compiler import BaseBackend

    values = dict(zip(kernel.arg_names, args)) | {k: v for k, v in kwargs.items() if k in kernel.arg_names}
    signature, constexprs, aligned = [], [], []
    for p in kernel.params:
        v = values[p.name]
        if p.is_constexpr:
            signature.append((p.name, "constexpr"))
            constexprs.append((p.name, v))
            continue
        kind, spec = native_specialize_impl(BaseBackend, v, False, not p.do_not_specialize,
                                            not p.do_not_specialize_on_alignment)
        if kind == "constexpr":        # the JIT turns an int argument equal to 1 into a constant
            constexprs.append((p.name, spec))
        elif isinstance(spec, str) and "D" in spec:
            aligned.append(p.name)
        signature.append((p.name, kind))
    options = tuple((k, kwargs[k]) for k in _LAUNCH_OPTIONS if k in kwargs)
    return Launch(kernel.fn.__module__, kernel.fn.__name__, tuple(signature), tuple(constexprs), tuple(aligned), options)


class _Recorder:
    def __init__(self, kernel: JITFunction, launches: list[Launch]):
        self.kernel, self.launches = kernel, launches

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launches.append(_launch(self.kernel, args, kwargs))


@contextmanager
def recording(*modules):
    """Within the block, launches of the modules' kernels are recorded (into the yielded list), not run."""
    launches: list[Launch] = []
    saved = []
    for mod in modules:
        for name, obj in list(vars(mod).items()):
            if isinstance(obj, JITFunction):
                saved.append((mod, name, obj))
                setattr(mod, name, _Recorder(obj, launches))
    try:
        yield launches
    finally:
        for mod, name, obj in saved:
            setattr(mod, name, obj)


@dataclass(frozen=True)
class Resources:
    launch: Launch
    arch: int
    registers: int           # per thread
    shared_bytes: int        # dynamic shared memory the launch requests
    static_shared_bytes: int
    stack_bytes: int         # local-memory stack frame: spilled registers
    seconds: float

    @property
    def spills(self) -> bool:
        return self.stack_bytes > 0


def compile_launch(launch: Launch, arch: int) -> Resources:
    """Compile for sm_<arch> (80: A100, 90: H100) and read the cubin's resource usage."""
    import importlib
    import time

    from triton import knobs

    kernel = getattr(importlib.import_module(launch.module), launch.kernel)
    if isinstance(kernel, _Recorder):
        kernel = kernel.kernel
    consts = dict(launch.constexprs)
    src = ASTSource(kernel, dict(launch.signature), constexprs={k: consts[k] for k in consts},
                    attrs={(kernel.arg_names.index(a),): [["tt.divisibility", 16]] for a in launch.aligned})
    start = time.perf_counter()
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=dict(launch.options))
    seconds = time.perf_counter() - start
    usage = _resource_usage(compiled.asm["cubin"], knobs.nvidia.cuobjdump.path)
    return Resources(launch, arch, usage["REG"], compiled.metadata.shared, usage["SHARED"], usage["STACK"], seconds)


def _resource_usage(cubin: bytes, cuobjdump: str) -> dict[str, int]:
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if "REG:" in ln)
    return {k: int(v) for k, v in re.findall(r"(\w+):(\d+)", line)}
