"""A real browser: JupyterLab on localhost, Debian's chromium driven by Playwright, on the nbinfer kernel.

- test_dashboard_in_jupyterlab: a 256-block pool while a shared-prefix batch with -n 2 runs: the map,
  the occupancy and the labels change; every part of the dashboard shows the same frame; the rates fall
  to 0 once idle; the notebook saved from the browser keeps the last frame (widget state and static
  snapshot), and shows it when reopened with and without that widget state; --background streams.
- test_block_map_of_big_pools: the default CPU pool (8,192 blocks) while a generation runs, and a
  faked 200,000-block GPU pool: a readable grid, hover naming a range and its owners.
- test_dashboard_of_a_remote_server: after `%nbinfer connect` to an `nbinfer serve` on loopback, the
  dashboard follows the server's /metrics (running requests, KV usage, rates) and shows no block map.

Screenshots go to artifacts/ (dashboard-*.png): look at them."""
import contextlib
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
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

# every prompt starts with the same two sentences (two full KV blocks): after the warm-up cell
# caches them, the batch's 16 sequences all share those blocks through the radix prefix cache
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
DASHBOARD, GENERATE, BACKGROUND, OTHER = 1, 4, 5, 6

# a GPU-sized pool, faked: 48 requests in runs of 600-2,500 blocks, five of them sharing a 200-block
# prefix near the end, and 20,000 cached blocks
FAKE_POOL = """\
from nbinfer import EngineStats, RequestStats
from nbinfer.jupyter.dashboard import Dashboard
N, prefix = 200_000, tuple(range(199_000, 199_200))
requests, start = {}, 0
for i in range(48):
    size = 600 + (397 * i) % 1900
    blocks = tuple(range(start, start + size)) + (prefix if 1 <= i <= 5 else ())
    requests[f"req-{i + 1}"] = RequestStats(f"req-{i + 1}", "running", 2000, 300, 512, blocks)
    start += size + 1200
cached = tuple(range(160_000, 180_000))
used = len({b for r in requests.values() for b in r.block_ids})
big = EngineStats(blocks_total=N, blocks_free=N - used - len(cached), blocks_used=used, blocks_cached=len(cached),
                  block_size=16, num_running=48, num_waiting=0, num_preempted_total=0, prompt_tokens_total=96_000,
                  generation_tokens_total=14_400, prefix_hit_tokens=1000, prefill_tokens_per_s=0.0,
                  decode_tokens_per_s=5200.0, weights_bytes=988 * 2**20, kv_cache_bytes=N * 196_608,
                  requests=requests, cached_block_ids=cached, model="Qwen2.5-0.5B (faked stats)", device="cuda:0",
                  dtype="bfloat16")
big_dashboard = Dashboard()
big_dashboard.apply(big_dashboard.build(big), [], [])
big_dashboard.show()
print("used", used)"""
BIG_CELLS = [
    "%nbinfer load",
    "%nbinfer dashboard",
    # fixed lengths (ignore_eos), run after run for a while: at most 2 x ~31 blocks of 8,192 in use
    "from nbinfer import SamplingParams\nfrom nbinfer.jupyter.session import get_llm\n"
    "for seed in range(10):\n"
    "    out = get_llm().generate('Once upon a time', SamplingParams(max_tokens=480, ignore_eos=True, n=2, seed=seed))\n"
    "print('generated', len(out[0].outputs))",
    FAKE_POOL,
]


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


def _notebook(cells) -> dict:
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": KERNEL, "display_name": "nbinfer browser test", "language": "python"},
                     "language_info": {"name": "python"}},
        "cells": [{"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "source": src, "outputs": [],
                   "execution_count": None} for i, src in enumerate(cells)],
    }


class Lab:
    def __init__(self, base: str, root: Path, data_dir: Path):
        self.base, self.root, self.data_dir = base, root, data_dir

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.base}{path}?token={TOKEN}", method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self) -> None:
        for session in self.api("/api/sessions"):
            self.api(f"/api/sessions/{session['id']}", method="DELETE")

    def write_trusted(self, name: str, nb: dict) -> None:
        """Write a notebook signed as JupyterLab signs what it saves (so its HTML renders unsanitized)."""
        import nbformat
        from nbformat.sign import NotebookNotary

        node = nbformat.from_dict(nb)
        NotebookNotary(data_dir=str(self.data_dir)).sign(node)
        (self.root / name).write_text(nbformat.writes(node))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server with an nbinfer kernelspec, quiet settings (no news or update toasts), and
    widget state saved with the notebook (jupyterlab_widgets' saveState, off by default)."""
    tmp = tmp_path_factory.mktemp("lab")
    root, prefix = tmp / "root", tmp / "prefix"
    root.mkdir()
    subprocess.run([sys.executable, "-m", "nbinfer", "install-kernel", "--prefix", str(prefix), "--name", KERNEL,
                    "--display-name", "nbinfer browser test"], check=True, capture_output=True)
    settings = tmp / "settings"
    for plugin, values in (("@jupyterlab/apputils-extension/notification",
                            {"fetchNews": "false", "checkForUpdates": False}),
                           ("@jupyter-widgets/jupyterlab-manager/plugin", {"saveState": True})):
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    (root / "dashboard.ipynb").write_text(json.dumps(_notebook(CELLS)))
    (root / "big_pools.ipynb").write_text(json.dumps(_notebook(BIG_CELLS)))
    jupyter_path = os.pathsep.join(filter(None, [str(prefix / "share" / "jupyter"), os.environ.get("JUPYTER_PATH")]))
    env = dict(os.environ, JUPYTER_PATH=jupyter_path,
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTER_CONFIG_DIR=str(tmp / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), IPYTHONDIR=str(tmp / "ipython"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), JUPYTER_DATA_DIR=str(tmp / "data"))
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
    yield Lab(base, root, tmp / "data")
    try:
        req = urllib.request.Request(f"{base}/api/shutdown?token={TOKEN}", method="POST")
        urllib.request.urlopen(req, timeout=10)
        server.wait(timeout=30)
    except Exception:
        server.terminate()
        server.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield b
        b.close()


@contextlib.contextmanager
def _opened(browser, lab: Lab, name: str):
    """A page with notebook `name` open and its kernel connected. On failure, a screenshot of what the
    browser showed (the first thing to look at in a CI log); afterwards the page closes and every
    kernel shuts down, so the next notebook starts on a fresh one."""
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    try:
        # ?reset: open this notebook alone, not also the tabs the workspace remembers
        page.goto(f"{lab.base}/lab/tree/{name}?reset&token={TOKEN}", timeout=120_000)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=180_000)
        page.wait_for_selector("text=nbinfer browser test | Idle", timeout=180_000)   # kernel connected
        yield page
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "browser-failure.png"))
        raise
    finally:
        page.close()
        lab.shut_down_kernels()


# what one dashboard shows, every part read in one go (JS runs to completion: no frame lands midway)
_READ = """(root) => {
    const c = root.querySelector('canvas.nbinfer-blockmap-canvas');
    const label = root.querySelector('.nbinfer-occupancy-text').textContent;
    const blocks = label.match(/([\\d,]+)\\/([\\d,]+) blocks/);
    const num = (s) => +s.replace(/,/g, '');
    const count = root.querySelector('.nbinfer-request-count');
    return {frame: +root.dataset.frame, cells: +c.dataset.cells, columns: +c.dataset.columns,
            used: +c.dataset.used, cached: +c.dataset.cached, shared: +c.dataset.shared,
            usedBlocks: +c.dataset.usedBlocks, cachedBlocks: +c.dataset.cachedBlocks,
            occupancyText: root.querySelector('.nbinfer-occupancy').textContent,
            occupancy: parseFloat(root.querySelector('.nbinfer-occupancy').textContent.replace(/[<>]/g, '')),
            labelUsed: blocks ? num(blocks[1]) : -1, labelTotal: blocks ? num(blocks[2]) : -1,
            header: root.querySelector('.nbinfer-header').textContent,
            batch: root.querySelector('.nbinfer-batch-title').textContent,
            requests: count ? +count.textContent : 0,
            rows: root.querySelectorAll('.nbinfer-table tbody tr').length,
            decode: root.querySelector('.nbinfer-decode-rate') ?
                    num(root.querySelector('.nbinfer-decode-rate').textContent) : -1,
            prefill: root.querySelector('.nbinfer-prefill-rate') ?
                     num(root.querySelector('.nbinfer-prefill-rate').textContent) : -1};
}"""


# records what every drawn frame shows (dashboard.js sets data-frame last, after drawing every part)
_RECORD_FRAMES = f"""(root) => {{
    window.nbinferFrames = [];
    const read = {_READ};
    new MutationObserver(() => window.nbinferFrames.push(read(root)))
        .observe(root, {{attributes: true, attributeFilter: ['data-frame']}});
}}"""


def _read(page, index: int = 0) -> dict:
    return page.locator(".nbinfer-dashboard").nth(index).evaluate(_READ)


def _hover_first(page, index: int, word: str) -> str:
    """Move the mouse over the block map's cells in order until the hover text contains `word`;
    leave the mouse there (for the screenshot) and return the text."""
    found = page.locator(".nbinfer-dashboard").nth(index).evaluate("""(root, word) => {
        const canvas = root.querySelector('canvas.nbinfer-blockmap-canvas');
        const info = root.querySelector('.nbinfer-blockmap-info');
        const r = canvas.getBoundingClientRect();
        const cols = +canvas.dataset.columns, size = r.width / cols, n = +canvas.dataset.cells;
        for (let i = 0; i < n; i++) {
            const x = r.left + (i % cols + 0.5) * size, y = r.top + (Math.floor(i / cols) + 0.5) * size;
            canvas.dispatchEvent(new MouseEvent('mousemove', {clientX: x, clientY: y, bubbles: true}));
            if (info.textContent.includes(word)) return {x, y, text: info.textContent};
        }
        return null;
    }""", word)
    assert found, f"no block-map cell reads {word!r} on hover"
    page.mouse.move(found["x"], found["y"])
    return page.locator(".nbinfer-dashboard").nth(index).locator(".nbinfer-blockmap-info").inner_text()


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


def _wait(predicate, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _save(page, path: Path) -> dict:
    """Ctrl+S in JupyterLab; the notebook as written to disk."""
    before = path.stat().st_mtime_ns
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    _wait(lambda: path.stat().st_mtime_ns != before, 30, "the notebook to be saved")
    time.sleep(0.5)
    return json.loads(path.read_text())


def _dashboard_state(nb: dict) -> dict:
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    views = [m["state"] for m in state.values() if m.get("state", {}).get("_anywidget_id", "").endswith("DashboardView")]
    assert len(views) == 1, f"expected the dashboard's widget state in the notebook, found {len(views)}"
    return views[0]


def test_dashboard_in_jupyterlab(lab, browser):
    with _opened(browser, lab, "dashboard.ipynb") as page:
        _run_cell(page, 0)
        page.wait_for_selector("text=nbinfer: loaded", timeout=60_000)
        _run_cell(page, DASHBOARD)
        page.wait_for_selector("canvas.nbinfer-blockmap-canvas", timeout=60_000)
        page.wait_for_function("document.querySelector('.nbinfer-occupancy') !== null", timeout=30_000)
        before = _read(page)
        assert before["cells"] == 256 and before["used"] == 0 and before["occupancy"] == 0, before
        # the static snapshot beside the live view is hidden while the widget shows
        assert page.locator(".nbinfer-dashboard-snapshot").count() == 1
        assert page.locator(".nbinfer-dashboard-snapshot").is_hidden()
        _run_cell(page, 2)
        _run_cell(page, 3)
        page.wait_for_function("+document.querySelector('canvas.nbinfer-blockmap-canvas').dataset.cached >= 2",
                               timeout=60_000)         # the opening is now a cached prefix

        # every frame the browser draws is recorded in the page itself, so a slow test process (or
        # a busy machine) misses none of them
        page.locator(".nbinfer-dashboard").evaluate(_RECORD_FRAMES)
        _run_cell(page, GENERATE)
        shot = False
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            now = _read(page)
            if not shot and now["used"] > 0:              # best effort: the run may outpace us
                page.locator(".nbinfer-dashboard").screenshot(path=str(ARTIFACTS / "dashboard-256.png"))
                shot = True
            done = page.locator(".jp-Notebook .jp-Cell").nth(GENERATE).locator("text=tokens in").count() > 0
            if done and now["used"] == 0:
                break
            time.sleep(0.1)
        samples = page.evaluate("window.nbinferFrames")

        busy = [s for s in samples if s["used"] > 0]
        assert len(busy) >= 2, f"the block map showed used blocks in {len(busy)} of {len(samples)} frames"
        assert max(s["occupancy"] for s in samples) > 0
        assert len({s["used"] for s in busy}) > 1, "the block map did not change while generating"
        assert len({s["occupancy"] for s in samples}) > 2, "occupancy did not change while generating"
        assert max(s["shared"] for s in samples) >= 2, "the shared opening never showed as shared blocks"
        # one frame everywhere: the map, the occupancy label and the table agree in every frame drawn
        for s in samples:
            assert s["usedBlocks"] == s["labelUsed"] and s["rows"] == s["requests"], s
        # -n 2: the header counts sequences, the table requests, and both say so
        with_n = [s for s in busy if s["requests"] == 8]
        assert with_n and all("sequences running" in s["header"] and "8 requests" in s["batch"] for s in with_n)
        assert any(int(s["header"].split(" sequences running")[0].split()[-1]) > 8 for s in with_n)

        # idle: everything freed and kept as cached prefixes, and the rates fall to 0
        after = _wait(lambda: (lambda s: s if s["decode"] == 0 and s["prefill"] == 0 else None)(_read(page)), 10,
                      "the rates to fall to 0 once idle")
        assert after["used"] == 0 and after["occupancy"] == 0 and "idle" in after["header"], after
        assert after["cached"] > 0, after
        time.sleep(3)                                   # the snapshot follows within a few seconds
        final = _read(page)
        page.locator(".nbinfer-dashboard").screenshot(path=str(ARTIFACTS / "dashboard-256-final.png"))

        # saved from the browser: the widget state and the static snapshot both hold the last frame
        nb = _save(page, lab.root / "dashboard.ipynb")
        outputs = nb["cells"][DASHBOARD]["outputs"]
        assert [sorted(o.get("data", {})) for o in outputs] == [
            ["application/vnd.jupyter.widget-view+json"], ["text/html", "text/plain"]], outputs
        snapshot = outputs[1]["data"]
        snapshot_html, snapshot_text = "".join(snapshot["text/html"]), "".join(snapshot["text/plain"])
        assert f"/ {final['cachedBlocks']} cached /" in snapshot_html, snapshot_text
        assert "no requests in flight" in snapshot_html and "decode 0 tok/s" in snapshot_html
        state = _dashboard_state(nb)
        assert f"0/256 blocks · {final['cachedBlocks']:,} cached" in state["occupancy_label"]
        assert "no requests in flight" in state["table"] and "idle" in state["header"]
        assert state["frame_id"] >= final["frame"]      # the throughput chart scrolls on for a minute

        # --background: the cell returns at once and keeps streaming into its own output while the
        # next cell runs (ipykernel 7 needs the thread's parent set for that)
        _run_cell(page, BACKGROUND)
        _run_cell(page, OTHER)
        cells = page.locator(".jp-Notebook .jp-Cell")
        cells.nth(OTHER).locator("text=the other cell ran").wait_for(timeout=120_000)
        cells.nth(BACKGROUND).locator("text=tokens in").wait_for(timeout=120_000)
        other = cells.nth(OTHER).locator(".jp-OutputArea").inner_text()
        assert "Tom" not in other and "tokens in" not in other, other

    # reopened later (a new kernel): the saved widget state draws the last frame saved (autosave may
    # have saved a later one than ours)...
    saved = json.loads((lab.root / "dashboard.ipynb").read_text())
    state = _dashboard_state(saved)
    saved_cached = int(state["occupancy_label"].split(" cached")[0].split("·")[-1].replace(",", ""))
    with _opened(browser, lab, "dashboard.ipynb") as page:
        page.wait_for_selector("canvas.nbinfer-blockmap-canvas", timeout=60_000)
        reopened = _read(page)
        assert reopened["cachedBlocks"] == saved_cached and reopened["frame"] == state["frame_id"], reopened
        assert page.locator(".nbinfer-dashboard-snapshot").is_hidden()
        page.locator(".nbinfer-dashboard").screenshot(path=str(ARTIFACTS / "dashboard-reopened.png"))
    # ...and without widget state (saveState off, the default), the snapshot shows the last frame
    saved["metadata"].pop("widgets", None)
    lab.write_trusted("no_widget_state.ipynb", saved)
    with _opened(browser, lab, "no_widget_state.ipynb") as page:
        snap = page.locator(".nbinfer-dashboard-snapshot")
        snap.wait_for(timeout=60_000)
        assert snap.is_visible() and f"/ {saved_cached} cached /" in snap.inner_text()
        snap.screenshot(path=str(ARTIFACTS / "dashboard-snapshot.png"))


def test_block_map_of_big_pools(lab, browser):
    with _opened(browser, lab, "big_pools.ipynb") as page:
        _run_cell(page, 0)
        page.wait_for_selector("text=nbinfer: loaded", timeout=120_000)
        _run_cell(page, 1)
        page.wait_for_selector("canvas.nbinfer-blockmap-canvas", timeout=60_000)
        idle = _read(page)
        assert idle["labelTotal"] == 8192 and idle["cells"] == 1024 and idle["columns"] == 64, idle

        # the default CPU pool while a generation runs: a grid of 8-block squares, a share like 0.4%
        _run_cell(page, 2)
        busy = _wait(lambda: (lambda s: s if s["usedBlocks"] > 20 else None)(_read(page)), 120,
                     "blocks in use on the 8,192-block map")
        assert 0 < busy["occupancy"] < 1 and "." in busy["occupancyText"], busy   # "0.4%", not "0%"
        assert busy["usedBlocks"] == busy["labelUsed"]
        hover = _hover_first(page, 0, "used by")
        assert hover.startswith("blocks ") and "(8)" in hover and "req-" in hover, hover
        page.locator(".nbinfer-dashboard").nth(0).screenshot(path=str(ARTIFACTS / "dashboard-8192.png"))
        page.locator(".jp-Notebook .jp-Cell").nth(2).locator("text=generated 2").wait_for(timeout=180_000)

        # a 200,000-block pool, faked: still 64 x 16 squares, each ~195 blocks, filled by its shares
        _run_cell(page, 3)
        page.locator(".nbinfer-dashboard").nth(1).wait_for(timeout=60_000)
        output = page.locator(".jp-Notebook .jp-Cell").nth(3).locator("text=/^used \\d+/")
        output.wait_for(timeout=60_000)
        used = int(output.inner_text().split()[1])
        big = _read(page, 1)
        assert big["labelTotal"] == 200_000 and big["cells"] == 1024 and big["columns"] == 64, big
        assert big["usedBlocks"] == used == big["labelUsed"] and big["cachedBlocks"] == 20_000, big
        assert 0 < big["used"] < 1024 and big["cached"] >= 100, big
        assert big["shared"] >= 1, big                      # the 200 blocks five requests share
        canvas = page.locator(".nbinfer-dashboard").nth(1).locator("canvas.nbinfer-blockmap-canvas")
        box = canvas.bounding_box()
        assert box["height"] <= 200 and box["width"] >= 600, box     # readable, not a grey sliver
        shared = _hover_first(page, 1, "shared")
        assert "used by req-2 (" in shared and "and 2 more" in shared and "of them shared" in shared, shared
        hover = _hover_first(page, 1, "cached prefix")
        assert hover.startswith("blocks 159,961–160,156 (196): 157 cached prefix · 39 free"), hover
        hover = _hover_first(page, 1, "used by req-1 ")
        assert "blocks 0–195 (196): 196 used by req-1 (196)" in hover, hover
        page.locator(".nbinfer-dashboard").nth(1).screenshot(path=str(ARTIFACTS / "dashboard-200000.png"))


def test_dashboard_of_a_remote_server(lab, browser):
    from server_testing import served

    with served() as (llm, srv):
        cells = [f"%nbinfer connect {srv.url}", "%nbinfer dashboard",
                 "from nbinfer import SamplingParams\nfrom nbinfer.jupyter.session import get_target\n"
                 "for seed in range(4):\n"
                 "    outs = get_target().generate(['Once upon a time'] * 3, "
                 "SamplingParams(max_tokens=400, ignore_eos=True, seed=seed))\n"
                 "print('generated', len(outs))"]
        (lab.root / "remote.ipynb").write_text(json.dumps(_notebook(cells)))
        with _opened(browser, lab, "remote.ipynb") as page:
            _run_cell(page, 0)
            page.wait_for_selector("text=nbinfer: connected to nbinfer", timeout=60_000)
            _run_cell(page, 1)
            page.wait_for_selector(".nbinfer-dashboard .nbinfer-header", timeout=60_000)
            _wait(lambda: "remote" in _read(page)["header"], 30, "the dashboard to show the remote server")
            root = page.locator(".nbinfer-dashboard")
            idle = _read(page)
            assert "idle" in idle["header"] and srv.url in idle["header"] and idle["cells"] == 0, idle
            assert root.locator("canvas.nbinfer-blockmap-canvas").is_hidden()
            assert root.locator(".nbinfer-blockmap-legend").is_hidden()
            assert "no block map" in root.locator(".nbinfer-blockmap-info").inner_text()
            assert "not reported by a remote server" in root.locator(".nbinfer-memory").inner_text()
            root.evaluate(_RECORD_FRAMES)
            _run_cell(page, 2)
            busy = _wait(lambda: (lambda s: s if "3 running" in s["header"] and s["occupancy"] > 0 else None)(
                _read(page)), 120, "the server's 3 running requests and KV usage on the dashboard")
            assert "3 requests" in busy["batch"] or "3" in busy["batch"], busy
            _wait(lambda: _read(page)["decode"] > 0, 60, "a decode rate from the server's token counters")
            root.screenshot(path=str(ARTIFACTS / "dashboard-remote.png"))
            page.locator(".jp-Notebook .jp-Cell").nth(2).locator("text=generated 3").wait_for(timeout=300_000)
            _wait(lambda: "idle" in _read(page)["header"], 30, "the dashboard to show the server idle again")
            frames = page.evaluate("window.nbinferFrames")
            assert all(f["cells"] == 0 for f in frames) and any("running" in f["header"] for f in frames)
            assert llm.stats().blocks_used == 0
