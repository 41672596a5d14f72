"""``CryptoOp``: the seed's entry point, one crypto op over matrices run where placement decides.

Why an object and not only the functions: the seed's call shape is
``CryptoOp(...).execute(gpu_threshold=1000, use_gpu=None)``, and an op that
knows its operands can say *before* running where it would run and why
(:meth:`CryptoOp.explain`, also reachable as ``nd.explain("modpow", ...)``).
The threshold is one input of the decision, not the decision: a host-resident
64-bit modmul barely pays its PCIe transfer at any size, while a 62-bit modpow
(about 90 modular multiplies per element) pays it at a few thousand elements.

Example::

    import numpy as np
    from noodle.crypto import CryptoOp
    op = CryptoOp("modpow", np.arange(5000, dtype=np.uint64), 65537, 2**61 - 1)
    print(op.explain())
    out = op.execute(gpu_threshold=1000)
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from noodle.crypto.placement import CryptoDecision, decide
from noodle.errors import CryptoValueError

# the seed's names, and ours
_ALIASES = {
    "modmul": "modmul", "rsa_modular_multiply": "modmul",
    "modpow": "modpow", "modular_pow": "modpow",
    "aes_matrix_encrypt": "aes_gcm_encrypt", "aes_encrypt": "aes_gcm_encrypt",
    "aes_matrix_decrypt": "aes_gcm_decrypt", "aes_decrypt": "aes_gcm_decrypt",
}


def _max_bits(x: Any) -> int:
    """Bit length of the largest magnitude in ``x`` (an int, a list, a NumPy/CuPy array)."""
    if isinstance(x, (int, np.integer)):
        return abs(int(x)).bit_length()
    arr = x if hasattr(x, "dtype") and hasattr(x, "shape") else np.asarray(x, dtype=object)
    if arr.size == 0:
        return 0
    if arr.dtype == object:
        return max(abs(int(v)).bit_length() for v in arr.flat)
    lo, hi = int(arr.min()), int(arr.max())
    return max(abs(lo).bit_length(), abs(hi).bit_length())


def _elements(*xs: Any) -> int:
    shapes = [np.shape(x) if not hasattr(x, "shape") else tuple(x.shape) for x in xs]
    try:
        return int(np.prod(np.broadcast_shapes(*shapes), dtype=np.int64))
    except ValueError as exc:
        raise CryptoValueError(f"operands of shapes {shapes} do not broadcast together ({exc}).") from None


def _on_gpu(*xs: Any) -> bool:
    return any(type(x).__module__.startswith("cupy") for x in xs)


class CryptoOp:
    """One crypto op and its operands: ``execute`` runs it where placement decides, ``explain`` says why.

    ``op``: 'modmul' (alias 'rsa_modular_multiply'), 'modpow' (alias 'modular_pow'),
    'aes_matrix_encrypt' or 'aes_matrix_decrypt'; ``args``/``kwargs`` are those of the
    function of that name in :mod:`noodle.crypto` (without ``device``).
    """

    def __init__(self, op: str, *args: Any, **kwargs: Any) -> None:
        if not isinstance(op, str) or op not in _ALIASES:
            near = difflib.get_close_matches(str(op), list(_ALIASES), n=2)
            hint = f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            raise CryptoValueError(f"CryptoOp: unknown op {op!r}.{hint} Known: {', '.join(_ALIASES)}.")
        if "device" in kwargs:
            raise CryptoValueError("CryptoOp takes no device=...: pass use_gpu=True/False to execute(), or "
                                   "call the function in noodle.crypto directly with device=....")
        self.op = op
        self.kind = _ALIASES[op]
        self.args = args
        self.kwargs = kwargs
        self._check_arity()

    def _check_arity(self) -> None:
        want = {"modmul": 3, "modpow": 3, "aes_gcm_encrypt": 2, "aes_gcm_decrypt": 2}[self.kind]
        if len(self.args) != want:
            raise CryptoValueError(f"CryptoOp({self.op!r}) takes {want} operands, got {len(self.args)}.")

    def __repr__(self) -> str:  # operands (and keys) are never shown
        return f"CryptoOp({self.op!r}, <{len(self.args)} operands>)"

    def explain(self, gpu_threshold: int = 1000, use_gpu: bool | None = None) -> CryptoDecision:
        """Where :meth:`execute` would run with these settings, the estimated costs, and why; runs nothing."""
        if isinstance(gpu_threshold, bool) or not isinstance(gpu_threshold, int) or gpu_threshold < 0:
            raise CryptoValueError(f"gpu_threshold must be an integer >= 0, got {gpu_threshold!r}.")
        a = self.args
        if self.kind in ("modmul", "modpow"):
            bits = max(_max_bits(a[2]), 1)
            exp_bits = max(_max_bits(a[1]), 1) if self.kind == "modpow" else 1
            return decide(self.kind, elements=_elements(*a), bits=bits, exp_bits=exp_bits, on_gpu=_on_gpu(*a),
                          use_gpu=use_gpu, gpu_threshold=gpu_threshold)
        data = a[0]
        nbytes = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else int(
            getattr(getattr(data, "_noodle_data", data), "nbytes", 0))
        return decide(self.kind, elements=nbytes // 16, nbytes=nbytes, on_gpu=_on_gpu(data),
                      use_gpu=use_gpu, gpu_threshold=gpu_threshold)

    def execute(self, gpu_threshold: int = 1000, use_gpu: bool | None = None) -> Any:
        """Run the op where :meth:`explain` decides (``use_gpu`` True/False forces it); same result anywhere."""
        device = self.explain(gpu_threshold, use_gpu).device
        from noodle.crypto import aes, modular

        fn = {"modmul": modular.modmul, "modpow": modular.modpow,
              "aes_gcm_encrypt": aes.aes_matrix_encrypt, "aes_gcm_decrypt": aes.aes_matrix_decrypt}[self.kind]
        return fn(*self.args, device=device, **self.kwargs)


def explain(op: str, *args: Any, device: str = "auto", **kwargs: Any) -> CryptoDecision:
    """``nd.explain`` for crypto ops: where ``op(*args)`` would run under ``device``, and why."""
    use_gpu = {"auto": None, "cpu": False, "gpu": True, "cuda": True}.get(device.split(":")[0])
    if use_gpu is None and device != "auto":
        raise CryptoValueError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}.")
    return CryptoOp(op, *args, **kwargs).explain(gpu_threshold=0, use_gpu=use_gpu)


__all__ = ["CryptoOp", "explain"]
