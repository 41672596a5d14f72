"""One exception hierarchy for everything noodle raises on purpose.

Every error a user can provoke (bad input, bad settings, a device that is not
there, hostile bytecode, a lost server) is a subclass of :class:`NoodleError`,
so ``except noodle.errors.NoodleError`` catches exactly what noodle means to
raise and nothing that is a bug. Messages say what happened, what was expected
and what to do about it.

This module is a leaf: it imports nothing from noodle.
"""

from __future__ import annotations


class NoodleError(Exception):
    """Base of every error noodle raises on purpose."""


class ConfigError(NoodleError, ValueError):
    """A setting (environment variable or ``noodle.toml`` entry) is invalid."""

    def __init__(self, name: str, value: object, allowed: str, source: str = "") -> None:
        self.name = name
        self.value = value
        self.allowed = allowed
        self.source = source
        where = f" (from {source})" if source else ""
        super().__init__(
            f"setting {name}={value!r}{where} is invalid: expected {allowed}. "
            f"Fix or unset {name} and start again."
        )


class ShapeError(NoodleError, ValueError):
    """Operand shapes do not fit together (broadcasting, matmul, reshape)."""


class DTypeError(NoodleError, TypeError):
    """Operand dtypes cannot be combined, or a dtype is not supported."""


class DeviceError(NoodleError, RuntimeError):
    """A device was asked for that does not exist or cannot be used."""


class DeviceUnavailableError(DeviceError):
    """A GPU (or other accelerator) was requested explicitly but none is usable."""


class DeviceTimeoutError(DeviceError, TimeoutError):
    """Work on a device did not finish within the configured timeout."""


class DeviceMemoryError(DeviceError, MemoryError):
    """A device allocation would exceed the configured memory limit."""


class OpValueError(NoodleError, ValueError):
    """An operand's *values* are outside what the op accepts (not its shape, not its dtype).

    Why its own class: NumPy raises ``ValueError`` for these (an integer to a
    negative integer power, the maximum of an empty array), so NumPy users
    catch ``ValueError``; calling them shape errors sent people reshaping
    arrays whose shapes were fine.
    """


class OpIndexError(NoodleError, IndexError):
    """An index is outside the array it reads (a gather ``x[idx]``, ``nd.take``, ``x[5]`` of 3 elements).

    Why an ``IndexError`` too: NumPy raises ``IndexError`` there, so code catching it keeps working
    when the function is jitted.
    """


class OpOverflowError(NoodleError, OverflowError):
    """A Python integer does not fit the array's dtype (300 beside an int8 array): NumPy raises
    OverflowError, and so does noodle, with advice."""


class UnknownOpError(NoodleError, ValueError):
    """An op name that noodle does not have (a ValueError, as for any bad argument value)."""


class TraceError(NoodleError):
    """A function cannot be traced into NIR (e.g. control flow on a traced value)."""


class TraceAttributeError(TraceError, AttributeError):
    """A NumPy attribute or method a traced array does not have (an AttributeError too, so
    ``hasattr`` and ``getattr(x, name, default)`` keep working)."""


class TraceTypeError(TraceError, TypeError):
    """An operand a traced array cannot be combined with (None, a string, a list): a TypeError
    too, as NumPy's own refusal of such an operand is."""


class IRVerifyError(NoodleError):
    """A NIR graph violates an invariant (types, SSA, operand counts)."""


class NBCFormatError(NoodleError, ValueError):
    """NBC bytes are truncated, corrupted, hostile or of an unknown version."""


class NBCResourceError(NoodleError, MemoryError):
    """A program would need more memory or work than the configured limits allow.

    Why a separate class: NBC bytes may come from a file or a socket, and a
    well-formed program of a hundred bytes can declare a broadcast to 2**40
    elements or an outer product of terabytes. Such programs are refused from
    their declared shapes *before* anything runs (instead of hanging or being
    killed by the OOM killer), and an allocation NumPy refuses while a program
    runs is reported the same way. It is a ``MemoryError`` too, so code that
    already handles running out of memory keeps working.
    """


class CompileError(NoodleError):
    """A backend failed to compile a program; callers fall back to the interpreter."""


class ExecutionError(NoodleError, RuntimeError):
    """A program could not be executed with the given arguments."""


class CacheError(NoodleError):
    """A cache operation was used wrongly (bad key, bad policy, bad size)."""


class CacheEncodingError(CacheError, ValueError):
    """A value cannot be encoded safely (no pickle) for a shared tier."""


class StoreError(NoodleError):
    """The math-object store was given bad input or its database failed."""


class DistError(NoodleError):
    """Distributed processing failed: a task crashed workers, timed out, or no cluster."""


class TaskTimeoutError(DistError, TimeoutError):
    """A distributed task ran past its timeout and was cancelled."""


class MonitorError(NoodleError):
    """Monitoring, profiling or the HTTP API was used wrongly."""


class BenchmarkError(NoodleError):
    """A benchmark suite name or option is unknown."""


__all__ = [name for name in dir() if name.endswith("Error")]


class WorkerCrashError(DistError):
    """A distributed task kept killing its worker process and was failed after Dask's allowed failures."""


__all__.append("WorkerCrashError")


class ObjectNotFoundError(StoreError, KeyError):
    """The math-object store has no object of that name."""


__all__.append("ObjectNotFoundError")


class DistArgumentError(DistError, ValueError):
    """An argument to ``Processor``, ``submit`` or ``map`` has a value outside what is allowed (a ValueError)."""


class DistTypeError(DistError, TypeError):
    """What was sent to, or came back from, a worker has the wrong type: a function that is not
    callable, arguments or results that cannot be pickled (a TypeError, as in plain Python)."""


class ClusterConnectionError(DistError, ConnectionError):
    """The connection to the Dask scheduler was lost: the cluster stopped, was closed or crashed."""


__all__ += ["ClusterConnectionError", "DistArgumentError", "DistTypeError"]


class CryptoError(NoodleError):
    """A crypto operation was given bad input (a modulus, an exponent, a key) or failed."""


class CryptoValueError(CryptoError, ValueError):
    """A crypto argument has a value outside what the operation defines (m <= 0, a negative exponent
    without ``allow_negative_exp``, no inverse, a key of the wrong length); a ValueError, as ``pow`` raises."""


class IntegrityError(CryptoError):
    """Authenticated decryption failed: the blob was altered, truncated, or the key is wrong."""


class RegionError(NoodleError):
    """A memory region was used wrongly: from another thread, after it ended, or out of order."""


class RegionEscapeError(RegionError):
    """``strict=True``: memory of a region was still referenced when the region ended (names the sites)."""


__all__ += ["CryptoError", "CryptoValueError", "IntegrityError", "RegionError", "RegionEscapeError"]


class FixerError(NoodleError):
    """The syntax fixer was given something it cannot work on (an argument, a file)."""


class FixerFileError(FixerError, OSError):
    """A source file could not be read, decoded or written (an OSError: the file, not the code, is at fault)."""


class FixerUsageError(FixerError, ValueError):
    """An argument of ``noodle fix`` (or of ``noodle.fixer.batch.run``) that cannot be used."""


class FixArgumentError(FixerError, ValueError):
    """``noodle.fixer.fix`` was called with an argument it cannot use (a ValueError)."""


__all__ += ["FixArgumentError", "FixerError", "FixerFileError", "FixerUsageError"]


class InferenceError(NoodleError):
    """The inference engine was given something it cannot serve, or could not serve a request."""


class ModelLoadError(InferenceError, ValueError):
    """A model (path or bytes) is not a loadable ONNX model, or a variant of it could not be built."""


class InferenceInputError(InferenceError, ValueError):
    """Inputs do not match the model: an unknown or missing input name, a wrong dtype or rank."""


class InferenceShutdownError(InferenceError, RuntimeError):
    """The engine was closed before (or while) a request was served; the request was not run."""


class InferenceOverloadError(InferenceError, RuntimeError):
    """The engine's request queue stayed full past the submit timeout (backpressure), or load was shed."""


__all__ += ["InferenceError", "InferenceInputError", "InferenceOverloadError", "InferenceShutdownError",
            "ModelLoadError"]
