"""Daemon statistics: counters, histogram quantiles, snapshot and the Prometheus text format."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest

from rtik.serve.stats import Histogram, Stats, serve_metrics


def test_counters_sum_over_labels():
    s = Stats()
    s.inc("dropped", stream="a", reason="duplicate")
    s.inc("dropped", 2, stream="a", reason="stale")
    s.inc("dropped", stream="b", reason="stale")
    assert s.total("dropped") == 4 and s.total("dropped", stream="a") == 3 and s.total("dropped", reason="stale") == 3
    assert s.total("frames_in") == 0


def test_counters_are_exact_across_threads():
    s = Stats()
    ts = [threading.Thread(target=lambda: [s.inc("frames_in", stream="x") for _ in range(5000)]) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert s.total("frames_in") == 20000


def test_histogram_quantiles_are_bucket_bounds():
    h = Histogram((0.001, 0.002, 0.005))
    for v in [0.0005] * 90 + [0.0015] * 9 + [0.01]:
        h.observe(v)
    assert h.count == 100 and h.quantile(0.5) == 0.001 and h.quantile(0.95) == 0.002
    assert h.quantile(1.0) == float("inf") and Histogram().quantile(0.5) == 0.0
    assert h.to_dict()["buckets"] == {"0.001": 90, "0.002": 99, "0.005": 99, "+Inf": 100}


def test_prometheus_text():
    s = Stats()
    s.inc("frames_in", stream='we"ird', transport="zmq")
    s.set("streams", 3)
    s.observe("latency_seconds", 0.0004)
    text = s.prometheus()
    assert "# TYPE rtik_frames_in_total counter" in text
    assert 'rtik_frames_in_total{stream="we\\"ird",transport="zmq"} 1' in text
    assert "rtik_streams 3" in text and 'rtik_latency_seconds_bucket{le="0.0005"} 1' in text
    assert "rtik_latency_seconds_count 1" in text and text.endswith("\n")
    snap = s.snapshot()
    assert snap["counters"][0]["labels"] == {"stream": 'we"ird', "transport": "zmq"} and snap["gauges"]["streams"] == 3


def test_metrics_http_server():
    s = Stats()
    s.inc("ticks")
    server = serve_metrics(s, "127.0.0.1", 0)
    port = server.server_address[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert "rtik_ticks_total 1" in r.read().decode()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
