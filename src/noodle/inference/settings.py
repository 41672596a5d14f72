"""The inference engine's and optimizer's settings, read from noodle's one validated config.

Why a view instead of new parsing: every ``NOODLE_*`` variable is declared and
validated once in :mod:`noodle.config` (a bad value raises
:class:`~noodle.errors.ConfigError` naming the variable, the value and what is
allowed); this module picks out the fields the engine uses and gives them
names and types the optimizer can rely on.

The variables and their defaults (the seed's, plus the batcher's two, whose
defaults were measured: see :mod:`noodle.inference.engine`):

=============================================== ======= ==========================================
``NOODLE_SYNTAX_FIXER_BATCH_SIZE_AUTO``          true    bound the batch size by free memory
``NOODLE_SYNTAX_FIXER_QUANTIZATION_ENABLED``     true    let the optimizer try INT8 / FP16 variants
``NOODLE_SYNTAX_FIXER_AUTO_OPTIMIZATION``        true    choose CPU or GPU per batch size by measurement
``NOODLE_SYNTAX_FIXER_MEMORY_THRESHOLD``         0.8     memory use fraction the batches may reach
``NOODLE_SYNTAX_FIXER_CPU_THRESHOLD``            0.9     CPU use above which load is delayed or shed
``NOODLE_SYNTAX_FIXER_PERFORMANCE_MONITORING``   true    report engine metrics to the registry
``NOODLE_INFERENCE_MAX_BATCH_SIZE``              64      most rows in one batched run
``NOODLE_INFERENCE_MAX_QUEUE_DELAY_MS``          0       longest a request waits for its batch to fill
=============================================== ======= ==========================================

Example::

    from noodle.inference import load_settings
    s = load_settings({"NOODLE_SYNTAX_FIXER_CPU_THRESHOLD": "0.75"})
    print(s.cpu_threshold, s.max_batch_size)
"""

from __future__ import annotations

from dataclasses import dataclass

from noodle import config


@dataclass(frozen=True)
class InferenceSettings:
    """The knobs the engine, the batcher and the optimizer read (all validated by :mod:`noodle.config`)."""

    batch_size_auto: bool = True
    quantization_enabled: bool = True
    auto_optimization: bool = True
    memory_threshold: float = 0.8
    cpu_threshold: float = 0.9
    performance_monitoring: bool = True
    max_batch_size: int = 64
    max_queue_delay_ms: float = 0.0


def load_settings(environ: dict[str, str] | None = None) -> InferenceSettings:
    """The current settings (``environ`` given: defaults < noodle.toml < that mapping, validated).

    A bad value raises :class:`~noodle.errors.ConfigError` naming the variable."""
    s = config.get_settings() if environ is None else config.load(environ)
    return InferenceSettings(
        batch_size_auto=s.batch_size_auto,
        quantization_enabled=s.quantization_enabled,
        auto_optimization=s.auto_optimization,
        memory_threshold=s.memory_threshold,
        cpu_threshold=s.cpu_threshold,
        performance_monitoring=s.performance_monitoring,
        max_batch_size=s.inference_max_batch_size,
        max_queue_delay_ms=s.inference_max_queue_delay_ms,
    )
