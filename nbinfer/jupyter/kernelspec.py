"""`nbinfer install-kernel`: a Jupyter kernel (this Python) that starts with `%load_ext nbinfer` done.

    python -m nbinfer install-kernel [--user | --sys-prefix | --prefix P] [--name N] [--display-name D]

The kernel runs `python -m ipykernel_launcher --ext nbinfer`; IPython's --ext loads the extension
before the first cell, so %%generate and %nbinfer work in a fresh notebook. Default: --user.
This module stays cheap to import (the CLI imports it to build its parser).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

DEFAULT_NAME = "nbinfer"
DEFAULT_DISPLAY_NAME = "Python 3 (nbinfer)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user (the default)")
    where.add_argument("--sys-prefix", action="store_true",
                       help=f"install into this Python environment ({sys.prefix})")
    where.add_argument("--prefix", metavar="P", default=None,
                       help="install under P/share/jupyter/kernels (P is a prefix, as for pip)")
    p.add_argument("--name", metavar="N", default=DEFAULT_NAME,
                   help=f"kernel name, letters, digits, '-', '.', '_' (default {DEFAULT_NAME})")
    p.add_argument("--display-name", metavar="D", default=DEFAULT_DISPLAY_NAME,
                   help=f"name shown in Jupyter's launcher (default {DEFAULT_DISPLAY_NAME!r})")


def kernel_json(display_name: str = DEFAULT_DISPLAY_NAME, python: str | None = None) -> dict:
    return {
        "argv": [python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--ext", "nbinfer"],
        "display_name": display_name,
        "language": "python",
        "metadata": {"debugger": True},
    }


def install(name: str = DEFAULT_NAME, display_name: str = DEFAULT_DISPLAY_NAME, user: bool = True,
            prefix: str | None = None) -> Path:
    """Write the kernelspec; returns the folder it was installed to."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager, _is_valid_kernel_name
    except ImportError:
        raise ValueError("jupyter_client is missing from this environment; nbinfer depends on it: "
                         "pip install nbinfer (or pip install jupyter_client)") from None
    if not _is_valid_kernel_name(name):
        raise ValueError(f"--name {name!r} is not a valid kernel name (letters, digits, '-', '.', '_')")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / name
        src.mkdir()
        (src / "kernel.json").write_text(json.dumps(kernel_json(display_name), indent=1) + "\n")
        _copy_logos(src)
        dest = KernelSpecManager().install_kernel_spec(str(src), kernel_name=name, user=user and prefix is None,
                                                       prefix=prefix)
    return Path(dest)


def _copy_logos(dest: Path) -> None:
    """Reuse ipykernel's Python logos so the launcher shows a familiar icon."""
    try:
        from ipykernel.kernelspec import RESOURCES
    except ImportError:
        return
    for logo in Path(RESOURCES).glob("logo-*"):
        shutil.copy(logo, dest / logo.name)


def run(args: argparse.Namespace) -> int:
    prefix = sys.prefix if args.sys_prefix else args.prefix
    try:
        dest = install(args.name, args.display_name, user=prefix is None, prefix=prefix)
    except OSError as e:
        raise ValueError(f"cannot write the kernelspec: {e}") from None
    print(f"Installed kernelspec {args.name} ({args.display_name!r}) in {dest}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nbinfer.jupyter.kernelspec", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
