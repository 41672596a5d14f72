"""MLInferenceEngine: one ONNX model served by ONNX Runtime, one batch at a time or dynamically batched.

Why an engine rather than a bare ``InferenceSession``: callers (the fixer's
reranker, the language server, user code) send many small requests from many
threads; the engine validates each request against the model's declared inputs
(a clear :mod:`noodle.errors` exception, never a silent cast), batches
concurrent requests (:mod:`noodle.inference.batcher`), runs the variant the
:class:`~noodle.inference.PerformanceOptimizer` measured best on this machine,
serves repeated inputs from a content-hash cache, and reports what it did to
the metrics registry.

Defaults, measured here with ``noodle bench inference`` (2 shared cores, ORT
1.32, MLPs of width 512 and 1024): ``max_batch_size=64`` and
``max_queue_delay_ms=0``. Past 64 rows the per-row time stopped falling (the
run is compute bound). A delay of 0 means a batch is whatever queued while
the previous batch ran ("batch while busy"), plus the requests just answered
when they come back within a quarter of the last run (the batcher's
``return_wait_fraction``): with 8 closed-loop clients the batches fill to the
client count (without that wait they fell into 1, 7, 1, 7), while waiting 0.5 / 2 ms
(Ray Serve's default is 10 ms, Triton's knob the same) lowered throughput
(4.9k -> 4.5k -> 2.5k req/s) and gave a lone client 4-10 ms of p95 for
nothing. Open-loop traffic that arrives in bursts may want a delay: both are
settings (``NOODLE_INFERENCE_MAX_BATCH_SIZE``,
``NOODLE_INFERENCE_MAX_QUEUE_DELAY_MS``, or the arguments), and the optimizer
lowers ``max_batch_size`` when free memory is short.

Example::

    import numpy as np
    from noodle.inference import MLInferenceEngine
    with MLInferenceEngine("model.onnx") as eng:
        y = eng.infer(np.zeros((4, 16), np.float32))       # one batch
        fut = eng.submit(np.zeros((1, 16), np.float32))    # batched with other callers
        print(y.shape, fut.result().shape)
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np

from noodle.errors import InferenceInputError, InferenceOverloadError, InferenceShutdownError, ModelLoadError
from noodle.inference import session as _session
from noodle.inference.batcher import BatchStats, DynamicBatcher

DEFAULT_QUEUE_SIZE = 4096


class MLInferenceEngine:
    """Serve one ONNX model (path or bytes) on ONNX Runtime, on the CPU or a CUDA GPU.

    ``device`` follows noodle's placement rules: ``'auto'`` (a GPU when one is
    usable and ONNX Runtime has its CUDA provider, else the CPU), ``'cpu'``,
    ``'gpu'`` or ``'cuda:N'`` (raises DeviceUnavailableError without one).
    ``optimizer`` is a :class:`~noodle.inference.PerformanceOptimizer` (or
    ``True`` for one with default settings) that picks the variant (FP32,
    INT8, FP16), the batch sizes and the device from measurements; without one
    the engine serves the model as given (FP32 on the CPU, FP16 weights on a GPU).

    Thread-safe: ``infer`` may be called from any number of threads (ONNX
    Runtime's ``run`` is), and ``submit`` from any number of threads.

    Example::

        eng = MLInferenceEngine(model_bytes, device="cpu")
        probs = eng.infer({"x": batch})
        eng.close()
    """

    def __init__(self, model: Any, *, device: Any = "auto", optimizer: Any = None,
                 max_batch_size: int | None = None, max_queue_delay_ms: float | None = None,
                 queue_size: int = DEFAULT_QUEUE_SIZE, cache: Any = None, name: str | None = None) -> None:
        from noodle.inference.settings import load_settings  # noqa: PLC0415

        settings = load_settings()
        delay_ms = settings.max_queue_delay_ms if max_queue_delay_ms is None else max_queue_delay_ms
        if isinstance(delay_ms, bool) or not isinstance(delay_ms, (int, float)) or not 0 <= delay_ms <= 10_000:
            raise InferenceInputError(f"max_queue_delay_ms must be a number of milliseconds in [0, 10000], "
                                      f"got {delay_ms!r}.")
        self._max_queue_delay_s = float(delay_ms) / 1000.0
        self._queue_size = _positive_int("queue_size", queue_size)
        if max_batch_size is not None:
            _positive_int("max_batch_size", max_batch_size)
        self._data = _session.model_bytes(model)
        self.placement = _session.resolve_device(device)
        self.name = name or "model"
        self.variant = "fp32"
        self.decision: Any = None
        self._gate: Any = None
        data = self._data
        if optimizer is not None:
            from noodle.inference.optimizer import LoadGate, PerformanceOptimizer  # noqa: PLC0415

            opt = PerformanceOptimizer() if optimizer is True else optimizer
            if not isinstance(opt, PerformanceOptimizer):
                raise ModelLoadError(f"optimizer must be a PerformanceOptimizer or True, got {type(optimizer).__name__}")
            self.decision = opt.optimize(self._data, device=device)
            self.variant = self.decision.variant
            self.placement = self.decision.placement
            data = self.decision.model_bytes
            if max_batch_size is None:
                max_batch_size = self.decision.max_batch_size
            self._gate = LoadGate(opt.settings.cpu_threshold, max(self._max_queue_delay_s, 0.001))
        elif self.placement.kind == "cuda":
            from noodle.inference.quantize import to_fp16  # noqa: PLC0415

            data, self.variant = to_fp16(self._data), "fp16"
        self._max_batch_size = _positive_int("max_batch_size", settings.max_batch_size
                                             if max_batch_size is None else max_batch_size)
        self._session = _session.make_session(data, self.placement)
        # CPU/GPU per batch size (AUTO_OPTIMIZATION with a GPU): one session per device, routed by rows.
        self._routes: dict[str, Any] = {}
        if self.decision is not None and self.decision.routes:
            self._routes = {p.name: (self._session if p == self.placement else _session.make_session(b, p))
                            for _, p, b in self.decision.routes}
        self.inputs = tuple(_session.TensorSpec.from_ort(a) for a in self._session.get_inputs())
        self.outputs = tuple(_session.TensorSpec.from_ort(a) for a in self._session.get_outputs())
        self._output_names = [o.name for o in self.outputs]
        self._preferred = tuple(getattr(self.decision, "preferred_batch_sizes", ()) or ())
        self._batcher: DynamicBatcher | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._cache = None
        if cache is not None and cache is not False:   # an empty CacheManager is falsy (len 0)
            from noodle.inference.results_cache import ResultsCache  # noqa: PLC0415

            self._cache = ResultsCache(self._data, self.variant, cache)
        self._metrics = _metrics_for(self, settings.performance_monitoring)

    # ---- serving -----------------------------------------------------------------------------------

    def infer(self, inputs: Any) -> Any:
        """Run one batch now (leading axis = rows): an array for a single-output model, else a dict."""
        if self._closed:
            raise InferenceShutdownError("the inference engine is closed; create a new one to run the model.")
        feeds = _session.check_inputs(inputs, self.inputs)
        if self._cache is not None:
            hit = self._cache.get(feeds)
            if hit is not None:
                self._metrics.cache(True)
                return self._present(hit)
            self._metrics.cache(False)
        t0 = time.perf_counter()
        out = self._run(feeds)
        self._metrics.latency(time.perf_counter() - t0, next(iter(feeds.values())).shape[0])
        if self._cache is not None:
            self._cache.put(feeds, out)
        return self._present(out)

    def submit(self, inputs: Any, *, timeout: float | None = None) -> Future:
        """Queue one request (its own rows on axis 0) to be batched with others; ``fut.result()`` has the
        form ``infer`` returns, for exactly these rows. A full queue blocks up to ``timeout`` seconds and
        then raises InferenceOverloadError; a closed engine raises InferenceShutdownError."""
        feeds = _session.check_inputs(inputs, self.inputs)
        if self._cache is not None:
            hit = self._cache.get(feeds)
            if hit is not None:
                self._metrics.cache(True)
                fut: Future = Future()
                fut.set_result(self._present(hit))
                return fut
            self._metrics.cache(False)
        batcher = self._batcher or self._start_batcher()
        if self._gate is not None:
            action = self._gate.action(batcher.pending(), self._queue_size)
            if action == "shed":
                self._metrics.load("shed")
                raise InferenceOverloadError(
                    f"request shed: CPU use is above NOODLE_SYNTAX_FIXER_CPU_THRESHOLD={self._gate.threshold} "
                    f"and {batcher.pending()} requests are already queued. Retry later or lower the load.")
            if action == "delay":
                self._metrics.load("delay")
                time.sleep(self._gate.delay_s)
        on_result = None
        if self._cache is not None:
            cache = self._cache

            def on_result(out: dict[str, np.ndarray], feeds: dict[str, np.ndarray] = feeds) -> None:
                cache.put(feeds, out)
        return batcher.submit(feeds, next(iter(feeds.values())).shape[0], timeout=timeout, on_result=on_result)

    def close(self, *, cancel_pending: bool = False, timeout: float | None = None) -> None:
        """Stop accepting requests and answer every accepted one (or fail it with InferenceShutdownError
        when ``cancel_pending``). Safe to call twice."""
        with self._lock:
            self._closed = True
            batcher = self._batcher
        if batcher is not None:
            batcher.close(cancel_pending=cancel_pending, timeout=timeout)

    def __enter__(self) -> MLInferenceEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- introspection -----------------------------------------------------------------------------

    @property
    def max_batch_size(self) -> int:
        """Most rows one batched run holds (the optimizer's memory-bounded choice, or the default 64)."""
        return self._max_batch_size

    @property
    def model_digest(self) -> str:
        """SHA-256 of the original model bytes: the identity results and measurements are keyed by."""
        import hashlib  # noqa: PLC0415

        return hashlib.sha256(self._data).hexdigest()

    def explain(self) -> str:
        """The optimizer's decisions with their measurements (or why there were none)."""
        if self.decision is None:
            return (f"{self.name}: no optimizer; serving the {self.variant} model on {self.placement.name} "
                    f"with max_batch_size={self._max_batch_size} (default) and "
                    f"max_queue_delay={self._max_queue_delay_s * 1000:g} ms (default).")
        return self.decision.explain()

    # ---- internals ---------------------------------------------------------------------------------

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self._session
        if self._routes:
            rows = next(iter(feeds.values())).shape[0]
            sess = self._routes.get(self.decision.route_for(rows), sess)
        results = sess.run(self._output_names, feeds)
        return dict(zip(self._output_names, results))

    def _present(self, out: dict[str, np.ndarray]) -> Any:
        if len(self._output_names) == 1:
            return out[self._output_names[0]]
        return out

    def _start_batcher(self) -> DynamicBatcher:
        with self._lock:
            if self._closed:
                raise InferenceShutdownError("the inference engine is closed; no new requests are accepted.")
            if self._batcher is None:
                self._batcher = DynamicBatcher(
                    self._run, self._present, max_batch_size=self._max_batch_size,
                    max_queue_delay_s=self._max_queue_delay_s, queue_size=self._queue_size,
                    preferred_batch_sizes=self._preferred, observer=self._observe,
                    name=f"noodle-inference-{self.name}")
            return self._batcher

    def _observe(self, stats: BatchStats) -> None:
        self._metrics.batch(stats)


class _NoMetrics:
    def cache(self, hit: bool) -> None:
        pass

    def load(self, action: str) -> None:
        pass

    def latency(self, seconds: float, rows: int) -> None:
        pass

    def batch(self, stats: BatchStats) -> None:
        pass


def _metrics_for(engine: MLInferenceEngine, enabled: bool) -> Any:
    if not enabled:
        return _NoMetrics()
    from noodle.inference.metrics import EngineMetrics  # noqa: PLC0415

    return EngineMetrics(engine.variant, engine.placement.name)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InferenceInputError(f"{name} must be an integer >= 1, got {value!r}.")
    return int(value)
