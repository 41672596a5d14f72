import json
import sys

import pytest

from noodle.errors import MonitorError
from noodle.monitor import ProfileSession, SamplingProfiler, gpu_range, latest_profile, profile


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def _busy(seconds=0.3):
    import time

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        fib(15)


def test_context_manager_samples_the_hot_function(tmp_path):
    with profile(interval=0.002, output=tmp_path / "fib") as p:
        _busy(0.4)
    s = p.session
    assert s.sample_count >= 10
    names = [name for name, _, _ in s.top_functions(3)]
    assert names[0].startswith("fib ")
    # stacks are root-first and end in fib
    deepest = max(s.stacks, key=lambda r: len(r["frames"]))
    assert s.frames[deepest["frames"][-1]]["name"] == "fib"
    assert s.total_seconds() == pytest.approx(sum(r["weight"] for r in s.stacks))
    assert latest_profile() is s
    assert set(p.paths) == {"html", "speedscope", "json"}


def test_renderers_write_flame_graph_and_speedscope(tmp_path):
    with profile(interval=0.002) as p:
        _busy(0.3)
    paths = p.session.save(tmp_path / "out" / "prof")
    html = open(paths["html"]).read()
    assert "<svg" in html and "fib" in html and "http" not in html.split("<svg", 1)[0].replace(
        'xmlns="http://www.w3.org/2000/svg"', "")  # no CDN script in the head
    assert 'data-frames="' in html and 'data-frames="0"' not in html
    sc = json.load(open(paths["speedscope"]))
    assert sc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    prof = sc["profiles"][0]
    assert prof["type"] == "sampled" and len(prof["samples"]) == len(prof["weights"]) > 0
    n = len(sc["shared"]["frames"])
    assert all(0 <= i < n for stack in prof["samples"] for i in stack)
    assert prof["endValue"] == pytest.approx(sum(prof["weights"]))


def test_session_json_round_trip_and_validation(tmp_path):
    with profile(interval=0.002) as p:
        _busy(0.1)
    data = json.loads(json.dumps(p.session.to_json()))
    again = ProfileSession.from_json(data)
    assert again == p.session
    data["stacks"].append({"frames": [10_000], "count": 1, "weight": 0.1})
    with pytest.raises(MonitorError, match="frame that does not exist"):
        ProfileSession.from_json(data)
    with pytest.raises(MonitorError, match="format"):
        ProfileSession.from_json({"format": "pyinstrument"})


def test_decorator_forms():
    @profile
    def work():
        _busy(0.1)
        return 42

    @profile(interval=0.003, name="named")
    def work2():
        _busy(0.1)
        return 7

    assert work() == 42 and work.session.sample_count > 0
    assert work2() == 7 and work2.session.name == "named"


def test_memory_trace_reports_peak_and_sites():
    with profile(memory=True) as p:
        transient = [bytearray(100_000) for _ in range(50)]
        del transient
        kept = [bytearray(10_000) for _ in range(100)]
    m = p.session.memory
    assert m["peak_bytes"] >= 5_000_000  # the freed blocks still count towards the peak
    top = m["top"][0]  # sites of what is still allocated at the end, largest first
    assert top["file"] == __file__ and top["size"] >= 1_000_000 and top["count"] >= 100
    assert len(kept) == 100


def test_profiler_misuse_is_reported():
    with pytest.raises(MonitorError, match="interval"):
        SamplingProfiler(interval=0)
    prof = SamplingProfiler()
    with pytest.raises(MonitorError, match="not running"):
        prof.stop()
    prof.start()
    with pytest.raises(MonitorError, match="already running"):
        prof.start()
    prof.stop()


def test_sampler_does_not_hook_calls():
    """A true sampler installs no trace or profile hook (which is what makes fib cheap to profile)."""
    with profile():
        assert sys.getprofile() is None and sys.gettrace() in (None, sys.gettrace())
        fib(18)


def test_gpu_range_is_a_no_op_record_without_gpu():
    with gpu_range("k") as rec:
        pass
    assert rec["name"] == "k"


@pytest.mark.gpu
def test_gpu_range_times_a_kernel_with_cuda_events(reg):
    import cupy as cp

    x = cp.ones(10_000_000, dtype=cp.float32)
    with profile() as p:
        with gpu_range("noodle_test_kernel") as rec:
            (x * 2 + 1).sum()
    assert rec["gpu_ms"] is not None and rec["gpu_ms"] > 0
    assert p.session.gpu and p.session.gpu[0]["name"] == "noodle_test_kernel"


def test_seed_api_session_id_export_metrics_and_add_profiler(monitor):
    prof = SamplingProfiler(interval=0.002)
    monitor.add_profiler(prof)
    prof.start("session-42")
    _busy(0.1)
    monitor.stop()  # stops the attached profiler too
    assert not prof.running
    session = latest_profile()
    assert session.name == "session-42"
    assert json.loads(session.export_metrics("json"))["name"] == "session-42"
    assert json.loads(session.export_metrics("speedscope"))["profiles"][0]["type"] == "sampled"
    assert "<svg" in session.export_metrics("html")
    with pytest.raises(MonitorError, match="unknown profile format"):
        session.export_metrics("xml")
