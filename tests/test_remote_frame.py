"""Dashboard frames for a remote server from its Prometheus /metrics, for each family's names (vLLM's,
SGLang's, nbinfer's extras): running / waiting, KV usage and capacity, token totals and rates from
counter deltas, reads at most twice a second, and a clear problem when /metrics is missing."""
import httpx
import pytest

from nbinfer.jupyter.remote_frame import INTERVAL_S, RETRY_S, RemoteMetricsReader
from nbinfer.jupyter.remote_view import status_text, widget_state
from nbinfer.server import RemoteLLM

VLLM = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="m"}} 3.0
vllm:num_requests_waiting{{engine="0",model_name="m"}} 1.0
vllm:kv_cache_usage_perc{{engine="0",model_name="m"}} 0.25
# TYPE vllm:prompt_tokens counter
vllm:prompt_tokens_total{{engine="0",model_name="m"}} {prompt}
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{{engine="0",model_name="m"}} {generated}
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{{engine="0",model_name="m"}} 32.0
# TYPE vllm:num_preemptions counter
vllm:num_preemptions_total{{engine="0",model_name="m"}} 2.0
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{{block_size="16",num_gpu_blocks="4096",engine="0"}} 1.0
"""

SGLANG = """# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="m"} 2.0
sglang:num_queue_reqs{model_name="m"} 5.0
sglang:token_usage{model_name="m"} 0.5
sglang:max_total_num_tokens{model_name="m"} 161721.0
# TYPE sglang:prompt_tokens counter
sglang:prompt_tokens_total{model_name="m"} 100.0
# TYPE sglang:generation_tokens counter
sglang:generation_tokens_total{model_name="m"} 50.0
"""


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _server(owner: str, metrics, reads: list):
    """A stand-in whose /metrics is metrics() (None: 404)."""
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m", "owned_by": owner, "max_model_len": 64}]})
        if path == "/get_model_info" and owner == "sglang":
            return httpx.Response(200, json={"model_path": "m"})
        if path == "/metrics":
            reads.append(1)
            text = metrics()
            return httpx.Response(404, text="Not Found") if text is None else httpx.Response(200, text=text)
        return httpx.Response(404, json={"error": {"message": "not found"}})
    return httpx.MockTransport(handle)


def test_vllm_names_give_usage_capacity_totals_and_rates():
    counters = {"prompt": 100, "generated": 10}
    reads, clock = [], Clock()
    with RemoteLLM("http://stand-in", transport=_server("vllm", lambda: VLLM.format(**counters), reads)) as r:
        reader = RemoteMetricsReader(r, clock)
        f = reader.frame()
        assert (f.server, f.num_running, f.num_waiting, f.kv_usage) == ("vllm", 3, 1, 0.25)
        assert f.kv_capacity == "4,096 blocks × 16 tokens" and f.prefix_hit_tokens == 32
        assert (f.prompt_tokens_total, f.generation_tokens_total, f.num_preempted_total) == (100, 10, 2)
        assert f.prefill_tokens_per_s == 0.0 and f.busy
        clock.now += INTERVAL_S / 2
        assert reader.frame() is f and len(reads) == 1          # at most one read per interval
        counters.update(prompt=300, generated=60)
        clock.now += 2.0 - INTERVAL_S / 2
        g = reader.frame()
        assert (g.prefill_tokens_per_s, g.decode_tokens_per_s) == (100.0, 25.0)
    state = widget_state(g)
    assert state["blocks_total"] == 0 and state["codes"] == b"" and "no block map" in state["caption"]
    assert "25%" in state["occupancy_label"] and "4,096 blocks × 16 tokens" in state["occupancy_label"]
    assert "3 running · 1 waiting" in state["header"] and "vllm" in state["header"]
    text = status_text(g)
    assert "KV cache   25% used of 4,096 blocks × 16 tokens" in text and "2 preempted so far" in text


def test_sglang_names():
    with RemoteLLM("http://stand-in", transport=_server("sglang", lambda: SGLANG, [])) as r:
        f = RemoteMetricsReader(r, Clock()).frame()
    assert (f.server, f.api, f.num_running, f.num_waiting, f.kv_usage) == ("sglang", "sglang", 2, 5, 0.5)
    assert f.kv_capacity == "161,721 token slots" and f.prefix_hit_tokens is None
    assert "from the prefix cache" not in status_text(f)


@pytest.mark.parametrize("owner, hint", [("sglang", " (SGLang serves it only when started with --enable-metrics)"),
                                         ("someone", "")])
def test_a_server_without_metrics_says_so_and_is_retried_later(owner, hint):
    reads, clock = [], Clock()
    with RemoteLLM("http://stand-in", transport=_server(owner, lambda: None, reads)) as r:
        reader = RemoteMetricsReader(r, clock)
        f = reader.frame()
        assert f.problem == "the server has no /metrics" + hint and f.kv_usage is None
        clock.now += INTERVAL_S * 2
        assert reader.frame() is f and len(reads) == 1
        clock.now += RETRY_S
        reader.frame()
        assert len(reads) == 2
    assert "no figures: the server has no /metrics" in status_text(f)
    assert "no figures" in widget_state(f)["occupancy_label"]


def test_a_metrics_page_without_usage_names_what_is_missing():
    with RemoteLLM("http://stand-in", transport=_server("someone", lambda: "other_metric 1.0\n", [])) as r:
        f = RemoteMetricsReader(r, Clock()).frame()
    assert f.kv_usage is None and f.problem is None
    assert f.not_shown()[0] == "KV-cache usage (not in its /metrics)"
    assert "KV cache   usage not reported" in status_text(f)
