"""Dynamic batching: results never mixed, shapes kept, every request answered or failed on shutdown."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from noodle.errors import InferenceOverloadError, InferenceShutdownError
from noodle.inference import MLInferenceEngine
from noodle.inference.batcher import DynamicBatcher
from noodle.inference.toy import mlp_numpy


def test_sixteen_threads_random_sizes_never_mix(mlp):
    model, weights = mlp
    seen_batches = []
    with MLInferenceEngine(model, device="cpu", max_batch_size=32, max_queue_delay_ms=3) as eng:
        inner = eng._observe

        def observe(stats):
            seen_batches.append(stats.requests)
            inner(stats)

        eng._observe = observe

        def client(seed):
            rng = np.random.default_rng(seed)
            out = []
            for _ in range(25):
                x = rng.standard_normal((int(rng.integers(1, 9)), 16)).astype(np.float32)
                out.append((x, eng.submit(x)))
            return [(x, f.result(timeout=30)) for x, f in out]

        with ThreadPoolExecutor(16) as pool:
            results = [r for chunk in pool.map(client, range(16)) for r in chunk]
        for x, y in results:
            assert y.shape == (x.shape[0], 5)
            np.testing.assert_allclose(y, eng.infer(x), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(y, mlp_numpy(weights, x), rtol=1e-4, atol=1e-4)
    assert len(results) == 400
    assert max(seen_batches) > 1, "no two requests were ever batched together"


def test_different_trailing_shapes_are_batched_apart(row_sum_model):
    rng = np.random.default_rng(1)
    with MLInferenceEngine(row_sum_model, device="cpu", max_queue_delay_ms=5) as eng:
        xs = [rng.standard_normal((int(rng.integers(1, 5)), int(rng.integers(1, 4)))).astype(np.float32)
              for _ in range(60)]
        with ThreadPoolExecutor(8) as pool:
            futs = list(pool.map(eng.submit, xs))
        for x, f in zip(xs, futs):
            np.testing.assert_allclose(f.result(timeout=30), x.sum(axis=1), rtol=1e-5, atol=1e-5)


def test_model_without_row_per_row_is_run_per_request(batch_mixing_model):
    rng = np.random.default_rng(2)
    with MLInferenceEngine(batch_mixing_model, device="cpu", max_queue_delay_ms=20) as eng:
        xs = [rng.standard_normal((int(rng.integers(1, 4)), 4)).astype(np.float32) for _ in range(24)]
        with ThreadPoolExecutor(8) as pool:
            futs = list(pool.map(eng.submit, xs))
        for x, f in zip(xs, futs):
            np.testing.assert_allclose(f.result(timeout=30), x.sum(axis=0, keepdims=True), rtol=1e-5, atol=1e-5)


def test_close_answers_every_accepted_request(mlp):
    model, weights = mlp
    rng = np.random.default_rng(3)
    eng = MLInferenceEngine(model, device="cpu", max_queue_delay_ms=50)
    accepted, refused = [], []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            x = rng.standard_normal((2, 16)).astype(np.float32)
            try:
                accepted.append((x, eng.submit(x)))
            except InferenceShutdownError:
                refused.append(1)
                return

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(accepted) < 200 and time.monotonic() < deadline:
        time.sleep(0.001)
    eng.close()
    stop.set()
    for t in threads:
        t.join()
    assert all(f.done() for _, f in accepted)
    for x, f in accepted:
        np.testing.assert_allclose(f.result(), mlp_numpy(weights, x), rtol=1e-4, atol=1e-4)


def test_close_with_cancel_fails_pending_clearly():
    gate = threading.Event()

    def run(feeds):
        gate.wait(10)
        return {"y": feeds["x"] + 1}

    b = DynamicBatcher(run, lambda out: out["y"], max_batch_size=1, max_queue_delay_s=0)
    futs = [b.submit({"x": np.full((1, 2), i, np.float32)}, 1) for i in range(10)]
    closer = threading.Thread(target=b.close, kwargs={"cancel_pending": True})
    closer.start()
    gate.set()
    closer.join(10)
    assert not closer.is_alive()
    done = failed = 0
    for i, f in enumerate(futs):
        exc = f.exception(timeout=10)
        if exc is None:
            np.testing.assert_array_equal(f.result(), np.full((1, 2), i + 1, np.float32))
            done += 1
        else:
            assert isinstance(exc, InferenceShutdownError) and "not run" in str(exc)
            failed += 1
    assert done + failed == 10 and failed >= 1


def test_full_queue_pushes_back():
    gate = threading.Event()
    b = DynamicBatcher(lambda f: (gate.wait(10), {"y": f["x"]})[1], lambda out: out["y"],
                       max_batch_size=1, max_queue_delay_s=0, queue_size=2)
    futs = [b.submit({"x": np.zeros((1, 1), np.float32)}, 1) for _ in range(3)]  # 1 running + 2 queued
    with pytest.raises(InferenceOverloadError, match="queue stayed full"):
        for _ in range(3):
            futs.append(b.submit({"x": np.zeros((1, 1), np.float32)}, 1, timeout=0.05))
    gate.set()
    b.close()
    assert all(f.result(timeout=10).shape == (1, 1) for f in futs)


def test_one_failing_request_fails_only_itself():
    def run(feeds):
        if np.isnan(feeds["x"]).any():
            raise ValueError("nan in the batch")
        return {"y": feeds["x"] * 3}

    b = DynamicBatcher(run, lambda out: out["y"], max_batch_size=64, max_queue_delay_s=0.05)
    xs = [np.full((1, 2), i, np.float32) for i in range(8)]
    xs[3] = np.full((1, 2), np.nan, np.float32)
    futs = [b.submit({"x": x}, 1) for x in xs]
    b.close()
    for i, (x, f) in enumerate(zip(xs, futs)):
        if i == 3:
            assert isinstance(f.exception(), ValueError)
        else:
            np.testing.assert_array_equal(f.result(), x * 3)


def test_preferred_size_dispatches_without_waiting_the_delay():
    sizes = []

    def run(feeds):
        sizes.append(feeds["x"].shape[0])
        return {"y": feeds["x"]}

    b = DynamicBatcher(run, lambda out: out["y"], max_batch_size=64, max_queue_delay_s=30.0,
                       preferred_batch_sizes=(4,))
    fut = b.submit({"x": np.zeros((4, 1), np.float32)}, 4)
    assert fut.result(timeout=10).shape == (4, 1)     # a 30 s delay would time this out
    b.close()
    assert sizes == [4]


def _closed_loop_batch_sizes(fraction: float, clients: int = 8, rounds: int = 40) -> list[int]:
    """Requests per batch when ``clients`` threads each send, wait for the answer, and send again, against
    a model run that takes 20 ms whatever the batch size (a memory-bound model's shape)."""
    sizes: list[int] = []

    def run(feeds):
        time.sleep(0.02)
        return {"y": feeds["x"] + 1}

    b = DynamicBatcher(run, lambda out: out["y"], max_batch_size=64, max_queue_delay_s=0.0,
                       return_wait_fraction=fraction, observer=lambda st: sizes.append(st.requests))
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        start.wait()
        for k in range(rounds):
            x = np.full((1, 2), i * 1000 + k, np.float32)
            np.testing.assert_array_equal(b.submit({"x": x}, 1).result(timeout=30), x + 1)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    b.close()
    assert sum(sizes) == clients * rounds          # every request answered, each exactly once
    return sizes


def test_closed_loop_clients_are_batched_together_not_in_lockstep():
    # Without waiting for the answered clients, the batches fall into 1, 7, 1, 7 (the one answered
    # first returns while the other seven run): twice the runs the load needs.
    sizes = _closed_loop_batch_sizes(0.25)
    steady = sizes[2:]
    assert sum(steady) / len(steady) >= 6.5, sizes


def test_a_lone_client_is_never_held_for_others():
    # One closed-loop client expects only itself back: every batch is its one request, sent at once
    # (a 200 ms run with a fraction of 1.0 would otherwise hold each request up to 200 ms, which the
    # queue delays below would show).
    seen: list[float] = []

    def run(feeds):
        time.sleep(0.2)
        return {"y": feeds["x"]}

    b = DynamicBatcher(run, lambda out: out["y"], max_queue_delay_s=0.0, return_wait_fraction=1.0,
                       observer=lambda st: seen.extend(st.queue_delays_s))
    for k in range(5):
        b.submit({"x": np.full((1, 1), k, np.float32)}, 1).result(timeout=30)
    b.close()
    assert len(seen) == 5 and max(seen) < 0.1, seen


def test_return_wait_fraction_is_checked():
    with pytest.raises(ValueError, match="return_wait_fraction"):
        DynamicBatcher(lambda f: f, lambda o: o, return_wait_fraction=1.5)
