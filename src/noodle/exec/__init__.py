"""The interpreter: the living definition of every op, and the JIT's fallback."""

from noodle.exec.executor import Executor

__all__ = ["Executor"]
