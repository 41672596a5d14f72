"""Settings: one validated object built from defaults, ``noodle.toml`` and the environment.

Why one object: every part of noodle (devices, placement, cache, monitor, dist)
reads its knobs from here, so a bad value fails once, at start, with a message
naming the variable, the value and what is allowed, instead of surfacing later
as a confusing runtime error deep in some subsystem.

Precedence, lowest to highest: built-in default < ``noodle.toml`` < environment.
The file is ``$NOODLE_CONFIG`` if set, else ``./noodle.toml`` if present. Its
keys are the field names below (flat, or inside a ``[noodle]`` table).

This module is a leaf: it imports only :mod:`noodle.errors`.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noodle.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError


def env_flag(name: str, meaning: str, default: bool = True) -> bool:
    """A boolean switch read from the environment now (``1/0``, ``true/false``, ``on/off``...);
    anything else is a :class:`ConfigError` naming the variable and ``meaning`` (what 1 and 0 do).

    Example::

        >>> import os
        >>> os.environ["NOODLE_EXAMPLE_SWITCH"] = "off"
        >>> env_flag("NOODLE_EXAMPLE_SWITCH", "1 (on) or 0 (off)")
        False
        >>> del os.environ["NOODLE_EXAMPLE_SWITCH"]
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return _parse_bool(raw)
    except ValueError:
        raise ConfigError(name, raw, f"a boolean: {meaning}", "the environment") from None


def _int_range(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError
        value = int(str(raw).strip()) if not isinstance(raw, int) else raw
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ValueError
        return value

    return parse


def _float_range(lo: float, hi: float, lo_open: bool = False) -> Callable[[Any], float]:
    def parse(raw: Any) -> float:
        if isinstance(raw, bool):
            raise ValueError
        value = float(str(raw).strip()) if not isinstance(raw, (int, float)) else float(raw)
        if value != value or value > hi or value < lo or (lo_open and value == lo):
            raise ValueError
        return value

    return parse


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        text = str(raw).strip().lower()
        if text not in options:
            raise ValueError
        return text

    return parse


def _text(raw: Any) -> str:
    return str(raw)


def _optional_text(raw: Any) -> str | None:
    text = str(raw).strip()
    return text or None


@dataclass(frozen=True)
class Field:
    """One setting: its attribute name, environment variable, default and parser."""

    name: str
    env: str
    default: Any
    parse: Callable[[Any], Any]
    allowed: str
    help: str


_FX = "NOODLE_SYNTAX_FIXER_"

FIELDS: tuple[Field, ...] = (
    # devices and placement (foundation)
    Field("gpu_acceleration", _FX + "GPU_ACCELERATION", True, _parse_bool, "true or false",
          "use a GPU when one is present"),
    Field("gpu_memory_limit_mb", _FX + "GPU_MEMORY_LIMIT", 4096, _int_range(1), "an integer >= 1 (MB)",
          "upper bound on noodle's GPU memory pool"),
    Field("gpu_memory_fraction", _FX + "GPU_MEMORY_FRACTION", 0.8, _float_range(0.0, 1.0, lo_open=True),
          "a number in (0, 1]", "fraction of the device's total memory the pool may use"),
    Field("gpu_timeout_ms", _FX + "GPU_TIMEOUT", 30000, _int_range(1), "an integer >= 1 (ms)",
          "bound on one GPU operation; past it the op fails (or auto falls back to CPU)"),
    Field("disable_gpu", "NOODLE_DISABLE_GPU", False, _parse_bool, "true or false",
          "never place work on a GPU"),
    Field("gpu_threshold", "NOODLE_GPU_THRESHOLD", 1000, _int_range(0), "an integer >= 0 (elements)",
          "operations smaller than this never go to a GPU under device='auto'"),
    Field("cache_dir", "NOODLE_CACHE_DIR", str(Path.home() / ".cache" / "noodle"), _text, "a directory path",
          "where calibration, compiled kernels and snapshots are kept"),
    Field("place_measure", "NOODLE_PLACE_MEASURE", True, _parse_bool, "true or false",
          "under backend='auto', time the fused regions whose cost estimates are close and keep the fastest"),
    Field("log_level", "NOODLE_LOG_LEVEL", "warning", _choice("debug", "info", "warning", "error"),
          "debug, info, warning or error", "noodle's logging level"),
    # optimizer (inference)
    Field("batch_size_auto", _FX + "BATCH_SIZE_AUTO", True, _parse_bool, "true or false",
          "choose batch sizes from available memory"),
    Field("quantization_enabled", _FX + "QUANTIZATION_ENABLED", True, _parse_bool, "true or false",
          "allow model quantization"),
    Field("auto_optimization", _FX + "AUTO_OPTIMIZATION", True, _parse_bool, "true or false",
          "adapt optimizations to system resources"),
    Field("memory_threshold", _FX + "MEMORY_THRESHOLD", 0.8, _float_range(0.0, 1.0), "a number in [0, 1]",
          "memory use fraction above which the optimizer backs off"),
    Field("cpu_threshold", _FX + "CPU_THRESHOLD", 0.9, _float_range(0.0, 1.0), "a number in [0, 1]",
          "CPU use fraction above which the optimizer backs off"),
    Field("inference_max_batch_size", "NOODLE_INFERENCE_MAX_BATCH_SIZE", 64, _int_range(1, 65536),
          "an integer in 1..65536 (rows)", "most rows the inference engine's dynamic batcher puts in one run"),
    Field("inference_max_queue_delay_ms", "NOODLE_INFERENCE_MAX_QUEUE_DELAY_MS", 0.0, _float_range(0.0, 10000.0),
          "a number of milliseconds in [0, 10000]",
          "longest a queued request waits for others to join its batch (0: a batch is what queued while "
          "the previous one ran)"),
    # cache
    Field("cache_strategy", _FX + "CACHE_STRATEGY", "advanced",
          _choice("lru", "lfu", "ttl", "adaptive", "advanced"), "lru, lfu, ttl, adaptive or advanced",
          "default cache policy ('advanced' means 'adaptive')"),
    Field("cache_size", _FX + "CACHE_SIZE", 10000, _int_range(1), "an integer >= 1 (entries)",
          "default cache capacity in entries"),
    Field("cache_ttl", _FX + "CACHE_TTL", 3600, _int_range(0), "an integer >= 0 (seconds, 0 = none)",
          "default time to live of a cache entry"),
    Field("distributed_cache", _FX + "DISTRIBUTED_CACHE", False, _parse_bool, "true or false",
          "use the Redis tier by default"),
    Field("cache_warming", _FX + "CACHE_WARMING", True, _parse_bool, "true or false",
          "snapshot the hottest entries at shutdown (a new manager loads one only when asked: "
          "snapshot=True or load_snapshot())"),
    Field("redis_url", "NOODLE_REDIS_URL", None, _optional_text, "a redis:// URL",
          "Redis server for the shared cache tier"),
    Field("cache_redis_timeout", "NOODLE_CACHE_REDIS_TIMEOUT", 0.5, _float_range(0.0, 60.0, lo_open=True),
          "a number of seconds in (0, 60]",
          "bound on every Redis call of the cache tier; a server silent that long counts as lost"),
    # distributed
    Field("distributed_processing", _FX + "DISTRIBUTED_PROCESSING", True, _parse_bool, "true or false",
          "allow distributed processing"),
    Field("max_workers", _FX + "MAX_WORKERS", 4, _int_range(1, 1024), "an integer in 1..1024",
          "most worker processes of a local cluster"),
    Field("worker_timeout", _FX + "WORKER_TIMEOUT", 300, _int_range(1), "an integer >= 1 (seconds)",
          "default timeout of a distributed task; a silent worker is dropped after it (Dask's worker-ttl)"),
    Field("task_chunk_size", _FX + "TASK_CHUNK_SIZE", 100, _int_range(1), "an integer >= 1 (items)",
          "items per task in a chunked map"),
    Field("coordinator_port", _FX + "COORDINATOR_PORT", 8081, _int_range(0, 65535), "an integer in 0..65535",
          "port of the local scheduler (0 = any free port)"),
    # running programs (interpreter, NBC): bounds for untrusted bytecode, checked before running
    Field("exec_max_bytes", "NOODLE_EXEC_MAX_BYTES", 0, _int_range(0),
          "an integer >= 0 (bytes, 0 = half the memory available when the program is checked)",
          "most memory one program may need at once; larger programs are refused before they run"),
    Field("exec_max_elements", "NOODLE_EXEC_MAX_ELEMENTS", 2**32, _int_range(1), "an integer >= 1 (elements)",
          "most elements one program may process in all (views and reductions included)"),
    Field("exec_max_iterations", "NOODLE_EXEC_MAX_ITERATIONS", 10**6, _int_range(1), "an integer >= 1 (iterations)",
          "most loop iterations one run of an untrusted program may take, all loops together (a loop's trip "
          "count is data: it is counted as it runs, and the run stops past this)"),
    Field("nbc_max_nodes", "NOODLE_NBC_MAX_NODES", 200_000, _int_range(1, 1_000_000),
          "an integer in 1..1000000 (instructions)",
          "most instructions nbc.loads accepts (checked before decoding, ~4 s per million)"),
    Field("jit_cache_size", "NOODLE_JIT_CACHE_SIZE", 256, _int_range(1, 1_000_000),
          "an integer in 1..1000000 (entries)",
          "most programs one cache of the JIT keeps (an Executor's programs, compiled runners, a jitted "
          "function's signatures); the least recently used goes first, so a long-running process stays bounded"),
    # monitoring
    Field("performance_monitoring", _FX + "PERFORMANCE_MONITORING", True, _parse_bool, "true or false",
          "run the resource sampler"),
    Field("monitoring_interval", _FX + "MONITORING_INTERVAL", 5.0, _float_range(1.0, 86400.0),
          "a number of seconds >= 1", "sampler interval"),
    Field("metrics_retention", _FX + "METRICS_RETENTION", 86400, _int_range(1), "an integer >= 1 (seconds)",
          "how long history is kept"),
    Field("alert_threshold", _FX + "ALERT_THRESHOLD", 0.8, _float_range(0.0, 1.0), "a number in [0, 1]",
          "memory (and GPU memory) use that raises an alert; a busy CPU is a bottleneck, not an alert"),
)

_BY_NAME = {f.name: f for f in FIELDS}


@dataclass(frozen=True)
class Settings:
    """Effective settings. ``sources`` maps each field name to where its value came from."""

    values: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(f"no setting named {name!r}") from None

    def describe(self) -> list[tuple[str, str, Any, str]]:
        """Rows of (field, environment variable, value, source) for ``noodle config``."""
        return [(f.name, f.env, self.values[f.name], self.sources[f.name]) for f in FIELDS]

    @property
    def gpu_allowed(self) -> bool:
        """True unless the user turned GPU use off by either switch."""
        return self.gpu_acceleration and not self.disable_gpu


def _config_file() -> Path | None:
    explicit = os.environ.get("NOODLE_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError("NOODLE_CONFIG", explicit, "the path of an existing TOML file", "environment")
        return path
    local = Path.cwd() / "noodle.toml"
    return local if local.is_file() else None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("NOODLE_CONFIG", str(path), f"a readable TOML file ({exc})", "file") from None
    if isinstance(data.get("noodle"), dict):
        data = {**{k: v for k, v in data.items() if k != "noodle"}, **data["noodle"]}
    unknown = sorted(set(data) - set(_BY_NAME))
    if unknown:
        raise ConfigError(unknown[0], data[unknown[0]], "one of: " + ", ".join(_BY_NAME), str(path))
    return data


def load(environ: dict[str, str] | None = None, file: Path | None = None) -> Settings:
    """Build settings from defaults, the config file and ``environ`` (default ``os.environ``)."""
    env = os.environ if environ is None else environ
    file_values = _read_file(file) if file is not None else (
        _read_file(p) if (p := _config_file()) is not None else {}
    )
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f in FIELDS:
        raw, source = f.default, "default"
        if f.name in file_values:
            raw, source = file_values[f.name], "noodle.toml"
        if f.env in env:
            raw, source = env[f.env], "environment"
        if source == "default":
            values[f.name] = raw
        else:
            try:
                values[f.name] = f.parse(raw)
            except (TypeError, ValueError):
                raise ConfigError(f.env, raw, f.allowed, source) from None
        sources[f.name] = f"{source} ({f.env})" if source == "environment" else source
    if values["cache_strategy"] == "advanced":
        values["cache_strategy"] = "adaptive"
    return Settings(values, sources)


_lock = threading.Lock()
_current: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, loaded once on first use."""
    global _current
    settings = _current
    if settings is None:
        with _lock:
            if _current is None:
                _current = load()
            settings = _current
    return settings


def reload(environ: dict[str, str] | None = None) -> Settings:
    """Re-read settings (tests and ``noodle config`` use this after changing the environment)."""
    global _current
    with _lock:
        _current = load(environ)
        return _current


__all__ = ["FIELDS", "Field", "Settings", "get_settings", "load", "reload"]
