import json

import pytest

from noodle.errors import MonitorError
from noodle.monitor import History


def test_since_returns_points_in_order():
    h = History(retention=1000)
    for i in range(10):
        h.add({"t": 100.0 + i, "cpu": i / 10})
    pts = h.since(105.0)
    assert [p["t"] for p in pts] == [105.0, 106.0, 107.0, 108.0, 109.0]
    assert h.latest()["cpu"] == pytest.approx(0.9)


def test_old_points_are_downsampled_and_memory_is_bounded():
    h = History(retention=3600, raw_window=60, raw_max=100, coarse_step=30)
    for i in range(3 * 3600):  # three retention periods at 1 point per second
        h.add({"t": float(i), "cpu": 0.5, "d_ops": 2.0})
    # raw: last 60 s; coarse: 3600 s / 30 s buckets (+1 partial)
    assert len(h) <= 60 + 1 + 3600 // 30 + 1
    pts = h.since(0)
    assert pts[0]["t"] >= 3 * 3600 - 3600 - 30  # nothing older than the retention
    coarse = [p for p in pts if "n" in p]
    assert coarse and all(p["cpu"] == pytest.approx(0.5) for p in coarse)
    full = [p for p in coarse if p["n"] == 30]
    assert full and full[0]["d_ops"] == pytest.approx(60.0)  # deltas add up, levels average


def test_save_and_load_round_trip(tmp_path):
    h = History(retention=600, raw_window=10, coarse_step=10)
    for i in range(50):
        h.add({"t": 1000.0 + i, "cpu": (i % 10) / 10, "mem": 0.3})
    path = h.save(tmp_path / "h.json")
    h2 = History.load(path)
    assert h2.since(0) == h.since(0)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("content, words", [
    ("not json", "not valid JSON"),
    (json.dumps({"format": "other"}), "noodle-history/1"),
    (json.dumps({"format": "noodle-history/1", "retention": 10}), "malformed"),
])
def test_load_rejects_bad_files(tmp_path, content, words):
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(MonitorError, match=words):
        History.load(p)


def test_load_missing_file(tmp_path):
    with pytest.raises(MonitorError, match="does not exist"):
        History.load(tmp_path / "nope.json")
