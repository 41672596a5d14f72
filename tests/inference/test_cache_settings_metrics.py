"""Results cache (content-hash keys), settings validation, and the metrics the engine reports."""

from __future__ import annotations

import numpy as np
import pytest

from noodle import metrics
from noodle.cache import CacheManager
from noodle.errors import ConfigError, InferenceError
from noodle.inference import MLInferenceEngine, load_settings
from noodle.inference.toy import mlp_numpy


def _hits():
    return metrics.registry.get("noodle_inference_cache_total").value("hit")


def test_cache_hit_is_identical_and_a_changed_input_misses(mlp):
    model, weights = mlp
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 16)).astype(np.float32)
    cache = CacheManager(policy="lru", max_entries=100, redis_url=None, snapshot=False)
    with MLInferenceEngine(model, device="cpu", cache=cache) as eng:
        first = eng.infer(x)
        before = _hits()
        second = eng.infer(x.copy())
        assert _hits() == before + 1 and len(cache) == 1
        np.testing.assert_array_equal(first, second)
        np.testing.assert_allclose(second, mlp_numpy(weights, x), rtol=1e-4, atol=1e-4)
        second[:] = 0                                  # a caller writing into its result changes nothing
        np.testing.assert_array_equal(eng.infer(x), first)
        changed = x.copy()
        changed[2, 7] += 1e-3
        eng.infer(changed)
        eng.infer(x[:2])
        assert _hits() == before + 2 and len(cache) == 3   # one element, or one row fewer: misses
        fut = eng.submit(changed)
        np.testing.assert_array_equal(fut.result(timeout=10), eng.infer(changed))


def test_cache_key_covers_dtype_shape_and_variant(two_io_model):
    from noodle.inference.results_cache import ResultsCache

    rc = ResultsCache(two_io_model, "fp32", True)
    a = np.zeros((2, 3), np.float32)
    k = np.zeros((2, 1), np.int64)
    base = rc.key({"a": a, "k": k})
    assert rc.key({"k": k, "a": a.copy()}) == base
    assert rc.key({"a": a.reshape(3, 2), "k": k}) != base
    assert rc.key({"a": a, "k": k.astype(np.int32)}) != base
    assert ResultsCache(two_io_model, "int8_dynamic", True).key({"a": a, "k": k}) != base
    with pytest.raises(InferenceError, match="CacheManager"):
        ResultsCache(two_io_model, "fp32", {"not": "a cache"})


def test_submitted_results_fill_the_cache(mlp):
    model, _ = mlp
    x = np.ones((2, 16), np.float32)
    with MLInferenceEngine(model, device="cpu", cache=True) as eng:
        y = eng.submit(x).result(timeout=10)
        before = _hits()
        np.testing.assert_array_equal(eng.submit(x).result(timeout=10), y)
        assert _hits() == before + 1


def test_settings_defaults_and_env():
    s = load_settings({})
    assert (s.batch_size_auto, s.quantization_enabled, s.auto_optimization, s.performance_monitoring) == (
        True, True, True, True)
    assert (s.memory_threshold, s.cpu_threshold, s.max_batch_size, s.max_queue_delay_ms) == (0.8, 0.9, 64, 0.0)
    s = load_settings({"NOODLE_SYNTAX_FIXER_CPU_THRESHOLD": "0.5", "NOODLE_INFERENCE_MAX_BATCH_SIZE": "16",
                       "NOODLE_SYNTAX_FIXER_QUANTIZATION_ENABLED": "false"})
    assert (s.cpu_threshold, s.max_batch_size, s.quantization_enabled) == (0.5, 16, False)


@pytest.mark.parametrize("var, value", [
    ("NOODLE_SYNTAX_FIXER_BATCH_SIZE_AUTO", "maybe"),
    ("NOODLE_SYNTAX_FIXER_QUANTIZATION_ENABLED", "2"),
    ("NOODLE_SYNTAX_FIXER_AUTO_OPTIMIZATION", ""),
    ("NOODLE_SYNTAX_FIXER_MEMORY_THRESHOLD", "1.5"),
    ("NOODLE_SYNTAX_FIXER_CPU_THRESHOLD", "-0.1"),
    ("NOODLE_SYNTAX_FIXER_PERFORMANCE_MONITORING", "yes please"),
    ("NOODLE_INFERENCE_MAX_BATCH_SIZE", "0"),
    ("NOODLE_INFERENCE_MAX_QUEUE_DELAY_MS", "soon"),
])
def test_bad_setting_names_the_variable(var, value):
    with pytest.raises(ConfigError) as info:
        load_settings({var: value})
    assert var in str(info.value) and repr(value) in str(info.value)


def test_engine_reads_batcher_settings(mlp, monkeypatch):
    from noodle import config

    monkeypatch.setenv("NOODLE_INFERENCE_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("NOODLE_INFERENCE_MAX_QUEUE_DELAY_MS", "0")
    config.reload()
    with MLInferenceEngine(mlp[0], device="cpu") as eng:
        assert eng.max_batch_size == 7 and eng._max_queue_delay_s == 0.0


def test_batches_reach_the_metrics_registry(mlp):
    model, _ = mlp
    rows = metrics.registry.get("noodle_inference_batch_rows")
    before = sum(child.count for _, child in rows.children()) if rows is not None else 0
    with MLInferenceEngine(model, device="cpu", max_queue_delay_ms=1) as eng:
        futs = [eng.submit(np.ones((1, 16), np.float32)) for _ in range(10)]
        for f in futs:
            f.result(timeout=10)
    reg = metrics.registry
    after = sum(child.count for _, child in reg.get("noodle_inference_batch_rows").children())
    assert after > before
    assert reg.get("noodle_inference_requests_total").value("fp32", "cpu") >= 10
    assert "noodle_inference_queue_delay_seconds" in reg.prometheus_text()
