"""Every notebook in notebooks/ runs top to bottom in a fresh kernel without an error, on the real
default model, and its answers make sense."""
import json
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from real_model import real_gguf  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# what a reader checks by eye, per notebook: the real model's greedy answers and the SGL constraints
SENSIBLE = {
    "quickstart": [r"100 ?(degrees|°)", r"capital of France is\W+Paris", r"Tokyo"],
    "sgl_programs": [r"^high \(\d{3}\) \d{3}-\d{4} True$", r"'city': '[A-Za-z ]{1,20}', 'days': \d+"],
}


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory):
    """A plain Python kernel of *this* interpreter: a user-level `python3` kernelspec elsewhere on the
    machine must not decide which Python runs the notebooks."""
    root = tmp_path_factory.mktemp("kernels")
    (root / "python3").mkdir()
    (root / "python3" / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    return [str(root)]


def test_there_are_notebooks():
    assert any(p.name == "quickstart.ipynb" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_errors(path, kernel_dirs, tmp_path):
    nb = nbformat.read(path, as_version=4)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs))
    client = NotebookClient(nb, km=km, timeout=600, allow_errors=False, store_widget_state=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    # the notebooks run on the default model a user gets (conftest points other tests at the bundled one)
    user_env = {k: v for k, v in os.environ.items() if k != "NBINFER_DEFAULT_MODEL"}
    client.execute(env=user_env)          # raises CellExecutionError, naming the cell, on the first error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    stale = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if "generating…" in o.get("data", {}).get("text/plain", "")]
    assert not stale, f"outputs saved mid-generation: {stale}"
    nbformat.validate(nb)
    if any("%nbinfer dashboard" in c.source for c in nb.cells if c.cell_type == "code"):
        # the dashboard's last frame is saved with the notebook
        state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
        views = [m for m in state.values() if m.get("state", {}).get("_anywidget_id", "").endswith("DashboardView")]
        assert views, "no dashboard widget state was saved"
    (tmp_path / path.name).write_text(nbformat.writes(nb))     # the executed copy, for inspection
    real_gguf()     # it ran on the real model, unless that could not be fetched (skips; fails under .ci/run)
    text = "\n".join(_shown_text(c) for c in nb.cells if c.cell_type == "code")
    for pattern in SENSIBLE[path.stem]:
        assert re.search(pattern, text, re.M), f"{path.name}: no output matches {pattern!r}"


def _shown_text(cell) -> str:
    """What the cell shows as text: its printed streams and the text/plain of its results."""
    parts = []
    for o in cell.get("outputs", []):
        parts.append(o.get("text", "") if o.get("output_type") == "stream" else o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)
