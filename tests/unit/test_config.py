"""Settings: defaults, noodle.toml, environment precedence, validation messages, `noodle config`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from noodle.config import FIELDS, load
from noodle.errors import ConfigError


def test_seed_defaults() -> None:
    s = load(environ={}, file=None)
    assert s.gpu_acceleration is True
    assert s.gpu_memory_limit_mb == 4096
    assert s.gpu_memory_fraction == 0.8
    assert s.gpu_timeout_ms == 30000
    assert s.disable_gpu is False
    assert s.cache_size == 10000 and s.cache_ttl == 3600
    assert s.max_workers == 4 and s.task_chunk_size == 100 and s.coordinator_port == 8081
    assert s.monitoring_interval == 5.0 and s.metrics_retention == 86400 and s.alert_threshold == 0.8
    assert s.cache_strategy == "adaptive"   # the seed's 'advanced' means our adaptive policy
    assert all(src == "default" for src in s.sources.values())


def test_environment_overrides_file(tmp_path) -> None:
    f = tmp_path / "noodle.toml"
    f.write_text("gpu_threshold = 5000\nmax_workers = 2\n[noodle]\ncache_size = 7\n")
    s = load(environ={"NOODLE_GPU_THRESHOLD": "123"}, file=f)
    assert s.gpu_threshold == 123
    assert "environment" in s.sources["gpu_threshold"]
    assert s.max_workers == 2 and s.sources["max_workers"] == "noodle.toml"
    assert s.cache_size == 7


@pytest.mark.parametrize(
    ("var", "value", "allowed"),
    [
        ("NOODLE_SYNTAX_FIXER_GPU_MEMORY_FRACTION", "1.5", "(0, 1]"),
        ("NOODLE_SYNTAX_FIXER_GPU_MEMORY_FRACTION", "0", "(0, 1]"),
        ("NOODLE_SYNTAX_FIXER_GPU_ACCELERATION", "maybe", "true or false"),
        ("NOODLE_GPU_THRESHOLD", "-1", ">= 0"),
        ("NOODLE_SYNTAX_FIXER_GPU_TIMEOUT", "fast", ">= 1"),
        ("NOODLE_SYNTAX_FIXER_COORDINATOR_PORT", "70000", "0..65535"),
        ("NOODLE_SYNTAX_FIXER_MONITORING_INTERVAL", "0.5", ">= 1"),
        ("NOODLE_SYNTAX_FIXER_CACHE_STRATEGY", "random", "lru, lfu"),
    ],
)
def test_bad_values_name_variable_value_and_allowed(var: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(environ={var: value}, file=None)
    msg = str(info.value)
    assert var in msg and repr(value) in msg and allowed in msg


def test_unknown_key_in_file(tmp_path) -> None:
    f = tmp_path / "noodle.toml"
    f.write_text("gpu_treshold = 5\n")
    with pytest.raises(ConfigError, match="gpu_treshold"):
        load(environ={}, file=f)


def test_every_field_has_env_name_and_help() -> None:
    names = [f.env for f in FIELDS]
    assert len(names) == len(set(names))
    assert all(f.env.startswith("NOODLE_") and f.help for f in FIELDS)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "noodle.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


def test_noodle_config_prints_values_and_sources() -> None:
    out = _cli("config", "--json", env={"NOODLE_GPU_THRESHOLD": "77"})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["gpu_threshold"]["value"] == 77
    assert "environment" in data["gpu_threshold"]["source"]
    assert data["gpu_memory_limit_mb"]["source"] == "default"


def test_noodle_config_fails_at_start_on_bad_value() -> None:
    out = _cli("config", env={"NOODLE_SYNTAX_FIXER_GPU_MEMORY_LIMIT": "lots"})
    assert out.returncode == 2
    assert "NOODLE_SYNTAX_FIXER_GPU_MEMORY_LIMIT" in out.stderr and "'lots'" in out.stderr
