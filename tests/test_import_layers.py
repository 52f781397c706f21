"""The import structure, read with `ast`: no circle anywhere under nbinfer/ or kernels/ (function-local
imports count), the kernels never import the engine, and nothing below the Jupyter layer imports
IPython or ipywidgets."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"nbinfer": ROOT / "nbinfer", "nbinfer.kernels": ROOT / "kernels"}


def module_name(path: Path) -> str:
    for pkg, folder in sorted(PACKAGES.items(), key=lambda kv: -len(kv[0])):
        if folder in path.parents or path.parent == folder:
            rel = path.relative_to(folder).with_suffix("")
            parts = [] if rel.name == "__init__" and len(rel.parts) == 1 else list(rel.parts)
            if parts and parts[-1] == "__init__":
                parts = parts[:-1]
            return ".".join([pkg, *parts])
    raise ValueError(path)


def imports_of(path: Path, modules: set[str] = frozenset()) -> set[str]:
    """Modules this file imports (every import statement, function-local ones too), absolute.
    `from pkg import x` names module pkg.x when that is one of `modules`, else pkg itself: a package's
    module importing a sibling is not an import of the package's __init__."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            mod = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            submodules = {f"{mod}.{a.name}" for a in node.names} & set(modules)
            found |= submodules
            if len(submodules) < len(node.names):
                found.add(mod)
    return found


def graph(folders) -> dict[str, set[str]]:
    files = {module_name(p): p for folder in folders for p in folder.rglob("*.py")}
    return {m: {i for i in imports_of(p, set(files)) if i in files and i != m} for m, p in files.items()}


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == "open":
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m)
    return found


def test_no_import_circle_anywhere():
    g = graph([ROOT / "nbinfer", ROOT / "kernels"])
    assert {"nbinfer.engine.attention.cpu_backend", "nbinfer.kernels.cpu_decode", "nbinfer.jupyter.magics",
            "nbinfer.lang.program", "nbinfer.server.app"} <= set(g)
    assert circles(g) == []


def test_the_circle_finder_sees_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_kernels_do_not_import_the_engine():
    for path in (ROOT / "kernels").rglob("*.py"):
        assert not any(i.startswith("nbinfer.engine") for i in imports_of(path)), path


def test_nothing_below_the_jupyter_layer_imports_ipython():
    for folder in ("nbinfer/engine", "nbinfer/models", "kernels"):
        for path in (ROOT / folder).rglob("*.py"):
            bad = {i for i in imports_of(path) if i.split(".")[0] in ("IPython", "ipywidgets", "anywidget")}
            assert not bad, (path, bad)


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
