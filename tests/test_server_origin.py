"""The `origin` tag on submit: stats() tells requests from the notebook ("api") and from HTTP
clients ("server") apart, so the dashboard can show server traffic like any other."""
import time

from nbinfer import SamplingParams


def test_submit_origin_is_carried_into_request_stats(shared_llm):
    params = SamplingParams(max_tokens=400, ignore_eos=True, temperature=0.0)
    plain = shared_llm.submit("The quick brown fox", params)
    served = shared_llm.submit("The quick brown fox", params, origin="server")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            requests = shared_llm.stats().requests
            if plain.request_id in requests and served.request_id in requests:
                break
            time.sleep(0.01)
        assert requests[plain.request_id].origin == "api"
        assert requests[served.request_id].origin == "server"
    finally:
        plain.cancel()
        served.cancel()
