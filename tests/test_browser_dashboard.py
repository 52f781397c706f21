"""A real browser: JupyterLab on localhost, Debian's chromium driven by Playwright. Opens a notebook on
the nbinfer kernel, runs the dashboard and a generation, and checks that the block map and the
occupancy change while it runs. Screenshots go to artifacts/ (dashboard.png while generating,
dashboard-final.png after)."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("NBINFER_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
TOKEN = "nbinfer-browser-test"
KERNEL = "nbinfer-browser"

# every prompt starts with the same two sentences (two full KV blocks): after the warm-up cell
# caches them, the batch's 12 sequences all share those blocks through the radix prefix cache
OPENING = ("Once upon a time, there was a little dog named Max. He lived in a small house near the woods. "
           "Max had a red ball, and he loved it very much.")
ENDINGS = ["One day,", "Max wanted to", "Then", "One night,", "Max and", "Max wanted to learn to",
           "But one day,", "One morning,"]
CELLS = [
    "%nbinfer load --num-kv-blocks 256",
    "%nbinfer dashboard",
    f"opening = {OPENING!r}",
    "%%generate --max-tokens 1\n{opening}",
    "%%generate --max-tokens 160 -n 2 --temperature 0.9 --seed 0\n" + "\n---\n".join(
        "{opening} " + e for e in ENDINGS),
    "%%generate --background --max-tokens 200 -n 6 --seed 1 --out bg\nOne day, a little cat named Tom",
    "import time\ntime.sleep(4)\nprint('the other cell ran')",
]
GENERATE, BACKGROUND, OTHER = 4, 5, 6


def _requirements() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        return "jupyterlab is not installed"
    if not Path(CHROMIUM).exists():
        return f"chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium)"
    return None


pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(_requirements() is not None, reason=str(_requirements()))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook() -> dict:
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": KERNEL, "display_name": "nbinfer browser test", "language": "python"},
                     "language_info": {"name": "python"}},
        "cells": [{"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "source": src, "outputs": [],
                   "execution_count": None} for i, src in enumerate(CELLS)],
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server with an nbinfer kernelspec and quiet settings (no news or update toasts)."""
    tmp = tmp_path_factory.mktemp("lab")
    root, prefix = tmp / "root", tmp / "prefix"
    root.mkdir()
    subprocess.run([sys.executable, "-m", "nbinfer", "install-kernel", "--prefix", str(prefix), "--name", KERNEL,
                    "--display-name", "nbinfer browser test"], check=True, capture_output=True)
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    (root / "dashboard.ipynb").write_text(json.dumps(_notebook()))
    jupyter_path = os.pathsep.join(filter(None, [str(prefix / "share" / "jupyter"), os.environ.get("JUPYTER_PATH")]))
    env = dict(os.environ, JUPYTER_PATH=jupyter_path,
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"), JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), IPYTHONDIR=str(tmp / "ipython"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"))
    port = _free_port()
    log = open(tmp / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=None",
         "--LabApp.extension_manager=readonly", "--allow-root"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
            break
        except Exception:
            if server.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail("JupyterLab did not start:\n" + (tmp / "lab.log").read_text()[-3000:])
            time.sleep(0.5)
    yield base
    try:
        req = urllib.request.Request(f"{base}/api/shutdown?token={TOKEN}", method="POST")
        urllib.request.urlopen(req, timeout=10)
        server.wait(timeout=30)
    except Exception:
        server.terminate()
        server.wait(timeout=30)
    log.close()


def _read(page) -> dict:
    return page.evaluate("""() => {
        const c = document.querySelector('canvas.nbinfer-blockmap-canvas');
        const o = document.querySelector('.nbinfer-occupancy');
        return {cells: c ? +c.dataset.cells : -1, used: c ? +c.dataset.used : -1,
                cached: c ? +c.dataset.cached : -1, shared: c ? +c.dataset.shared : -1,
                occupancy: o ? parseInt(o.textContent) : -1};
    }""")


def _run_cell(page, index: int) -> None:
    """Shift+Enter on cell `index`, until its prompt shows it queued or run ([*] or [N]): a key press
    that lands before the kernel connection is ready is dropped by JupyterLab."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    for _ in range(6):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(ch == "*" or ch.isdigit() for ch in prompt.inner_text()):
                return
            time.sleep(0.1)
    raise AssertionError(f"cell {index} never started running")


def test_dashboard_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1200})
            page.goto(f"{lab}/lab/tree/dashboard.ipynb?token={TOKEN}", timeout=120_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=180_000)
            page.wait_for_selector("text=nbinfer browser test | Idle", timeout=180_000)   # kernel connected

            _run_cell(page, 0)
            page.wait_for_selector("text=nbinfer: loaded", timeout=60_000)
            _run_cell(page, 1)
            page.wait_for_selector("canvas.nbinfer-blockmap-canvas", timeout=60_000)
            page.wait_for_function("document.querySelector('.nbinfer-occupancy') !== null", timeout=30_000)
            before = _read(page)
            assert before["cells"] == 256 and before["used"] == 0 and before["occupancy"] == 0, before
            _run_cell(page, 2)
            _run_cell(page, 3)
            page.wait_for_function("+document.querySelector('canvas.nbinfer-blockmap-canvas').dataset.cached >= 2",
                                   timeout=60_000)         # the opening is now a cached prefix

            _run_cell(page, GENERATE)
            samples, shot = [], False
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                now = _read(page)
                samples.append(now)
                if not shot and len([s for s in samples if s["used"] > 0]) >= 3:
                    page.locator(".nbinfer-dashboard").screenshot(path=str(ARTIFACTS / "dashboard.png"))
                    page.screenshot(path=str(ARTIFACTS / "dashboard-page.png"))
                    shot = True
                done = page.locator(".jp-Notebook .jp-Cell").nth(GENERATE).locator("text=tokens in").count() > 0
                if done and now["used"] == 0:
                    break
                time.sleep(0.1)
            after = _read(page)
            page.wait_for_timeout(500)
            page.locator(".nbinfer-dashboard").screenshot(path=str(ARTIFACTS / "dashboard-final.png"))

            busy = [s for s in samples if s["used"] > 0]
            assert busy, f"the block map never showed a used block: {samples[-5:]}"
            assert max(s["occupancy"] for s in samples) > 0
            assert len({s["used"] for s in busy}) > 1, "the block map did not change while generating"
            assert len({s["occupancy"] for s in samples}) > 2, "occupancy did not change while generating"
            assert max(s["shared"] for s in samples) >= 2, "the shared opening never showed as shared blocks"
            assert after["used"] == 0 and after["occupancy"] == 0, after     # everything freed...
            assert after["cached"] > 0, after                                 # ...and kept as cached prefixes
            assert shot

            # --background: the cell returns at once and keeps streaming into its own output while the
            # next cell runs (ipykernel 7 needs the thread's parent set for that)
            _run_cell(page, BACKGROUND)
            _run_cell(page, OTHER)
            cells = page.locator(".jp-Notebook .jp-Cell")
            cells.nth(OTHER).locator("text=the other cell ran").wait_for(timeout=120_000)
            cells.nth(BACKGROUND).locator("text=tokens in").wait_for(timeout=120_000)
            other = cells.nth(OTHER).locator(".jp-OutputArea").inner_text()
            assert "Tom" not in other and "tokens in" not in other, other
        except BaseException:
            # what the browser showed when it went wrong: the first thing to look at in a CI log
            page.screenshot(path=str(ARTIFACTS / "browser-failure.png"))
            raise
        finally:
            browser.close()
