"""`nbinfer install-kernel`: the installed kernel preloads the extension, so %%generate works with no
%load_ext; a real ipykernel routes streamed and --background output to the cell that started it."""
import json
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

KERNEL = "nbinfer-test"


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("prefix")
    done = subprocess.run([sys.executable, "-m", "nbinfer", "install-kernel", "--prefix", str(prefix),
                           "--name", KERNEL, "--display-name", "nbinfer test"],
                          capture_output=True, text=True, check=True)
    assert f"Installed kernelspec {KERNEL}" in done.stdout
    return prefix / "share" / "jupyter" / "kernels"


@pytest.fixture(scope="module")
def kernel(kernel_dir):
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def run(kc, code, timeout=300):
    """Execute and return (reply, iopub messages that belong to this execution)."""
    msgs = []
    reply = kc.execute_interactive(code, output_hook=msgs.append, timeout=timeout)
    return reply, msgs


def test_kernelspec_contents(kernel_dir):
    spec = json.loads((kernel_dir / KERNEL / "kernel.json").read_text())
    assert spec["argv"][:3] == [sys.executable, "-m", "ipykernel_launcher"]
    assert spec["argv"][-2:] == ["--ext", "nbinfer"] and spec["display_name"] == "nbinfer test"


def test_cli_rejects_conflicting_destinations(tmp_path):
    done = subprocess.run([sys.executable, "-m", "nbinfer", "install-kernel", "--user", "--prefix", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "not allowed with argument --user" in done.stderr
    done = subprocess.run([sys.executable, "-m", "nbinfer", "install-kernel", "--prefix", str(tmp_path),
                           "--name", "no spaces allowed"], capture_output=True, text=True)
    assert done.returncode == 2 and "not a valid kernel name" in done.stderr


def test_generate_without_load_ext_streams_into_the_cell(kernel):
    reply, msgs = run(kernel, "%%generate --max-tokens 40 --seed 0 --out r\nOnce upon a time")
    assert reply["content"]["status"] == "ok", reply["content"]
    kinds = [m["msg_type"] for m in msgs]
    first = next(m for m in msgs if m["msg_type"] == "display_data")
    display_id = first["content"]["transient"]["display_id"]
    updates = [m for m in msgs if m["msg_type"] == "update_display_data"]
    assert updates and all(u["content"]["transient"]["display_id"] == display_id for u in updates)
    assert "error" not in kinds
    final = updates[-1]["content"]["data"]
    assert "text/html" in final and "tokens in" in final["text/plain"]
    _, msgs = run(kernel, "print(repr(r.text)); print(r.done)")
    out = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream")
    text = eval(out.splitlines()[0])
    assert text and text.strip() in final["text/plain"] and out.splitlines()[1] == "True"
    _, msgs = run(kernel, "print(sorted(get_ipython().extension_manager.loaded))")
    assert "nbinfer" in "".join(m["content"].get("text", "") for m in msgs)


def test_background_output_stays_in_its_own_cell(kernel):
    """ipykernel 7 sends a thread's output to the latest cell unless the thread names its parent:
    the background stream must keep updating the cell that started it while another cell runs."""
    kc = kernel
    code = ("%%generate --background --out bg --max-tokens 200 -n 4 --temperature 1.0 --seed 5\n"
            "Once upon a time\n---\nOne day, a little dog named Max\n---\nTom wanted to learn to swim.")
    bg_id = kc.execute(code)
    other_id = None
    msgs, replies = [], {}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except Exception:
            msg = None
        if msg is not None:
            msgs.append(msg)
        while True:
            try:
                r = kc.get_shell_msg(timeout=0.01)
            except Exception:
                break
            replies[r["parent_header"]["msg_id"]] = r
        if bg_id in replies and other_id is None:
            other_id = kc.execute("import time\nprint('other cell starts')\ntime.sleep(3)\nprint('other cell ends')")
        if other_id in replies:
            break
    assert bg_id in replies and other_id in replies
    display_ids = {m["content"]["transient"]["display_id"] for m in msgs
                   if m["msg_type"] == "display_data" and m["parent_header"].get("msg_id") == bg_id}
    assert len(display_ids) == 1
    (display_id,) = display_ids
    updates = [m for m in msgs if m["msg_type"] == "update_display_data"
               and m["content"]["transient"]["display_id"] == display_id]
    assert updates
    assert all(u["parent_header"]["msg_id"] == bg_id for u in updates), \
        "a background update was routed to another cell"
    reply_time = replies[bg_id]["header"]["date"]
    assert any(u["header"]["date"] > reply_time for u in updates), "nothing streamed after the cell returned"
    other_out = [m for m in msgs if m["parent_header"].get("msg_id") == other_id and m["msg_type"] != "status"]
    assert all(m["msg_type"] in ("stream", "execute_input") for m in other_out), [m["msg_type"] for m in other_out]
    _, out = run(kc, "bg.wait(); print(bg.done, len(bg.texts))")
    assert "True 12" in "".join(m["content"].get("text", "") for m in out)


def test_interrupt_cancels_and_kernel_keeps_the_engine(kernel_dir):
    """The stop button is SIGINT to the kernel: the cell raises KeyboardInterrupt, its blocks are freed,
    and the next cell generates on the same engine."""
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        run(kc, "%nbinfer load --num-kv-blocks 128")
        msg_id = kc.execute("%%generate --max-tokens 400 -n 8 --temperature 1.0 --out g\nOnce upon a time")
        # interrupt once tokens are streaming
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            m = kc.get_iopub_msg(timeout=60)
            if m["msg_type"] == "update_display_data" and m["parent_header"].get("msg_id") == msg_id:
                break
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=60)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=60)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        # what the notebook shows: one line, no traceback through nbinfer's frames
        errors = []
        while True:
            m = kc.get_iopub_msg(timeout=60)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "error":
                errors.append(m["content"])
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                break
        assert [e["traceback"] for e in errors] == [["interrupted: 1 request cancelled, its KV blocks freed"]]
        _, out = run(kc, "from nbinfer.jupyter.session import get_llm\ns = get_llm().stats()\n"
                         "print(g.interrupted, s.blocks_used, s.num_running, s.num_waiting)")
        assert "True 0 0 0" in "".join(m["content"].get("text", "") for m in out)
        reply, _ = run(kc, "%%generate --max-tokens 5 --out after\nOne day")
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_run_all_stops_at_an_interrupted_generation(kernel_dir, tmp_path):
    """Run All through nbclient, the stop button pressed (the kernel interrupted) while a %%generate
    cell streams: that cell ends in error with one line, and the cells after it never run."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from nbformat.v4 import new_code_cell, new_notebook

    streaming = tmp_path / "streaming"
    watch = ("import threading, time, pathlib\n"            # tells the test when tokens are streaming
             "def _watch():\n"
             "    while not (get_ipython().user_ns.get('g') is not None and any(g.texts)):\n"
             "        time.sleep(0.01)\n"
             f"    pathlib.Path({str(streaming)!r}).write_text('yes')\n"
             "threading.Thread(target=_watch, daemon=True).start()")
    nb = new_notebook(cells=[
        new_code_cell("%nbinfer load --num-kv-blocks 128"),
        new_code_cell(watch),
        new_code_cell("%%generate --max-tokens 400 -n 8 --temperature 1.0 --out g\nOnce upon a time"),
        new_code_cell("print('this cell must not run')"),
    ])
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    km.start_kernel()

    def press_stop():
        deadline = time.monotonic() + 240
        while not streaming.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        km.interrupt_kernel()

    clicker = threading.Thread(target=press_stop, daemon=True)
    clicker.start()
    try:
        with pytest.raises(nbclient.exceptions.CellExecutionError) as failed:
            nbclient.NotebookClient(nb, km=km, timeout=300).execute()
        assert failed.value.ename == "KeyboardInterrupt"
        outputs = nb.cells[2].outputs
        errors = [o for o in outputs if o.output_type == "error"]
        assert [(e.ename, e.traceback) for e in errors] == [
            ("KeyboardInterrupt", ["interrupted: 1 request cancelled, its KV blocks freed"])]
        shown = [o for o in outputs if o.output_type == "display_data"]
        assert shown and "interrupted" in shown[-1].data["text/plain"]      # the last frame says so too
        assert nb.cells[3].outputs == [] and nb.cells[3].execution_count is None
    finally:
        clicker.join(timeout=5)
        km.shutdown_kernel(now=True)
