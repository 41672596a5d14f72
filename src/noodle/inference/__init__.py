"""noodle.inference: serve ONNX models on ONNX Runtime with dynamic batching and a measuring optimizer.

Why nothing heavy is imported here: ``import noodle.inference`` must stay
cheap for the fixer and the CLI; ONNX Runtime loads when an engine is created.

Example::

    import numpy as np
    from noodle.inference import MLInferenceEngine
    with MLInferenceEngine("model.onnx", device="auto") as eng:
        y = eng.infer(np.zeros((8, 16), np.float32))
        futures = [eng.submit(np.zeros((1, 16), np.float32)) for _ in range(8)]
        rows = [f.result() for f in futures]
"""

from __future__ import annotations

from noodle._lazy import lazy_attributes

_LAZY = {
    "MLInferenceEngine": "noodle.inference.engine:MLInferenceEngine",
    "PerformanceOptimizer": "noodle.inference.optimizer:PerformanceOptimizer",
    "Decision": "noodle.inference.optimizer:Decision",
    "InferenceSettings": "noodle.inference.settings:InferenceSettings",
    "load_settings": "noodle.inference.settings:load_settings",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = list(_LAZY)
