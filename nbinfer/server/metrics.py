"""/metrics in Prometheus text format, with vLLM's metric names (a dashboard or a Grafana board built
for vLLM reads nbinfer unchanged).

Engine-wide numbers (running / waiting, KV-cache use, token and prefix-cache counters) are read from
`llm.stats()` at scrape time, so they count every request, the notebook's too. Latency histograms and
finished-request counts cover the requests this server served. Each server has its own registry, so
two servers in one process (or in one test session) never clash.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
_TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


class _EngineCollector:
    def __init__(self, llm, model_name: str):
        self.llm = llm
        self.labels = {"model_name": model_name, "engine": "0"}

    def collect(self):
        try:
            s = self.llm.stats()
        except RuntimeError:        # shut down: nothing to report
            return
        names, values = list(self.labels), list(self.labels.values())

        def gauge(name, doc, value):
            g = GaugeMetricFamily(name, doc, labels=names)
            g.add_metric(values, value)
            return g

        def counter(name, doc, value):
            c = CounterMetricFamily(name, doc, labels=names)
            c.add_metric(values, value)
            return c

        yield gauge("vllm:num_requests_running", "Requests in the running batch.", s.num_running)
        yield gauge("vllm:num_requests_waiting", "Requests waiting to be scheduled.", s.num_waiting)
        yield gauge("vllm:kv_cache_usage_perc", "KV-cache usage: fraction of blocks held by requests.",
                    s.blocks_used / s.blocks_total if s.blocks_total else 0.0)
        yield counter("vllm:prompt_tokens", "Prompt tokens submitted.", s.prompt_tokens_total)
        yield counter("vllm:generation_tokens", "Tokens generated.", s.generation_tokens_total)
        yield counter("vllm:prefix_cache_queries", "Prompt tokens looked up in the prefix cache.",
                      s.prompt_tokens_total)
        yield counter("vllm:prefix_cache_hits", "Prompt tokens found in the prefix cache.", s.prefix_hit_tokens)
        yield counter("vllm:num_preemptions", "Preemptions (a sequence's blocks freed, recomputed later).",
                      s.num_preempted_total)
        # nbinfer's own: the block pool as the dashboard shows it
        yield gauge("nbinfer:kv_blocks_total", "KV-cache blocks in the pool.", s.blocks_total)
        yield gauge("nbinfer:kv_blocks_free", "Free KV-cache blocks.", s.blocks_free)
        yield gauge("nbinfer:kv_blocks_cached", "Unreferenced blocks kept by the prefix cache.", s.blocks_cached)
        yield gauge("nbinfer:prefill_tokens_per_second", "Prefill throughput (sliding window).",
                    s.prefill_tokens_per_s)
        yield gauge("nbinfer:decode_tokens_per_second", "Decode throughput (sliding window).",
                    s.decode_tokens_per_s)


class ServerMetrics:
    def __init__(self, llm, model_name: str):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_EngineCollector(llm, model_name))
        names = ["model_name", "engine"]
        self._labels = (model_name, "0")
        reg = self.registry
        self.success = Counter("vllm:request_success", "Finished requests, by finish reason.",
                               names + ["finished_reason"], registry=reg)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Time to first token.", names,
                              buckets=_LATENCY_BUCKETS, registry=reg)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Request latency, arrival to finish.", names,
                             buckets=_LATENCY_BUCKETS, registry=reg)
        self.queue = Histogram("vllm:request_queue_time_seconds", "Time waiting before first scheduled.",
                               names, buckets=_LATENCY_BUCKETS, registry=reg)
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Mean time between output tokens, per request.",
                             names, buckets=_LATENCY_BUCKETS, registry=reg)
        self.prompt_len = Histogram("vllm:request_prompt_tokens", "Prompt tokens per request.", names,
                                    buckets=_TOKEN_BUCKETS, registry=reg)
        self.gen_len = Histogram("vllm:request_generation_tokens", "Generated tokens per request.", names,
                                 buckets=_TOKEN_BUCKETS, registry=reg)

    def record(self, outputs) -> None:
        """One HTTP request's finished RequestOutputs."""
        lab = self._labels
        for out in outputs:
            m = out.metrics
            generated = sum(len(c.token_ids) for c in out.outputs)
            for c in out.outputs:
                self.success.labels(*lab, c.finish_reason or "abort").inc()
            self.prompt_len.labels(*lab).observe(len(out.prompt_token_ids))
            self.gen_len.labels(*lab).observe(generated)
            if m is None:
                continue
            if m.first_token_time is not None:
                self.ttft.labels(*lab).observe(m.first_token_time - m.arrival_time)
                if m.finished_time is not None and generated > 1:
                    per_seq = max(1, generated // max(1, len(out.outputs)))
                    if per_seq > 1:
                        self.itl.labels(*lab).observe((m.finished_time - m.first_token_time) / (per_seq - 1))
            if m.finished_time is not None:
                self.e2e.labels(*lab).observe(m.finished_time - m.arrival_time)
            if m.first_scheduled_time is not None:
                self.queue.labels(*lab).observe(m.first_scheduled_time - m.arrival_time)

    def render(self) -> bytes:
        return generate_latest(self.registry)
