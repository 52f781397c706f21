"""`pip install nbinfer` is enough for the notebook (the Jupyter pieces are core dependencies, extras
are for the optional), the README's install lines name real extras, and the CLI's words are right."""
import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower().replace("_", "-")


def _installed_closure(requirements: list[str]) -> set[str]:
    """Distribution names `pip install` of these requirements brings in (extras' own lines left out)."""
    seen: set[str] = set()
    todo = [_name(r) for r in requirements]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if "extra ==" not in r.partition(";")[2]]
    return seen


def _imports(folder: Path) -> dict[str, str]:
    """Top-level third-party modules imported anywhere (function bodies too) under folder -> a file."""
    found = {}
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "nbinfer":
                    found[top] = path.name
    return found


def test_the_jupyter_extension_needs_no_extra():
    """Everything nbinfer.jupyter imports (IPython, ipywidgets, anywidget, ipykernel, ...) comes with
    the core dependencies, so `%load_ext nbinfer` and the live dashboard work after `pip install nbinfer`."""
    core = _installed_closure(PROJECT["dependencies"])
    owners = metadata.packages_distributions()
    for module, where in _imports(ROOT / "nbinfer" / "jupyter").items():
        dists = {_name(d) for d in owners.get(module, [module])}
        assert dists & core, f"{where} imports {module}, which only an extra installs"
    for name in ("ipython", "ipywidgets", "anywidget", "ipykernel"):
        assert name in {_name(r) for r in PROJECT["dependencies"]}


def test_extras_are_for_the_optional_and_the_readme_names_real_ones():
    extras = PROJECT["optional-dependencies"]
    assert "jupyter" not in extras                 # nothing Jupyter is optional any more
    assert {"triton", "bench", "test"} <= set(extras)
    for doc in (ROOT / "README.md", ROOT / ".ci" / "run"):
        for names in re.findall(r"pip install [^\n]*?\.\[([\w,]+)\]", doc.read_text()):
            for extra in names.split(","):
                assert extra in extras, f"{doc.name} installs the missing extra [{extra}]"
    assert "pip install -e '.[test]'" in (ROOT / ".ci" / "run").read_text()


def test_install_kernel_help_names_the_magic_as_typed(capsys):
    from nbinfer.cli import main
    for argv in (["install-kernel", "--help"], ["--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        out = capsys.readouterr().out
        assert exit_.value.code == 0 and "preloads %load_ext nbinfer" in out and "%%load_ext" not in out


def test_demo_counts_one_prompt_as_one(llama_dir, capsys):
    from nbinfer.cli import main
    assert main(["demo", "--model", str(llama_dir), "--prompt", "Hi", "--max-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "\n1 prompt in one batch" in out and "1 prompts" not in out
