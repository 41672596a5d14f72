"""Where a crypto op runs: a per-op cost estimate, not one element threshold for all.

Why per op: a 62-bit modpow is about 90 modular multiplies per element, so a
GPU pays for its launch and PCIe transfer at a few thousand elements, while a
host-resident 64-bit modmul is one multiply per 24 bytes moved and barely pays
the transfer at any size; a 2048-bit powmod is milliseconds per element on a
CPU core. The rates are estimates of this machine class (the CPU ones measured
here, the GPU ones from published figures until a GPU run calibrates them), so
the decision is explainable: ``explain`` returns the costs it compared.

Example::

    from noodle.crypto.placement import decide
    print(decide("modpow", elements=10**6, bits=62, exp_bits=62))
"""

from __future__ import annotations

from dataclasses import dataclass, field

from noodle.errors import CryptoValueError, DeviceUnavailableError

CRYPTO_OPS = ("modmul", "modpow", "aes_gcm_encrypt", "aes_gcm_decrypt")

# CPU (2 cores, measured here): Numba 64-bit Montgomery multiplies per second, gmpy2 2048-bit powmod
# time on one core, OpenSSL AES-256-GCM bytes per second.
_CPU_MULMOD64 = 1.9e8          # inside modpow's Montgomery loop
_CPU_MODMUL64 = 3.0e8          # one modmul per element, memory-bound
_CPU_POWMOD2048 = 3.2e-3
_CPU_AES = 3.5e9
_CPU_CALL = 5e-6
# GPU (H100/H200 class, estimates): 64-bit mulmods/s (__umul64hi, no native 64-bit multiplier),
# multi-limb powmod speed-up over one gmpy2 core, AES-CTR+GHASH bytes/s, PCIe, launch.
_GPU_MULMOD64 = 1.0e10
_GPU_BIGINT_SPEEDUP = 400.0
_GPU_AES = 1.0e11
_PCIE = 1.2e10
_GPU_LAUNCH = 1.5e-5


@dataclass(frozen=True)
class CryptoDecision:
    """Where one crypto op runs, its estimated seconds on each device, and the reason in words."""

    op: str
    device: str                     # "cpu" or "gpu"
    reason: str
    costs: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        est = ", ".join(f"{dev} {_fmt(sec)}" for dev, sec in sorted(self.costs.items()))
        return f"{self.op} -> {self.device}: {self.reason}" + (f"; estimated {est}" if est else "")


def _fmt(sec: float) -> str:
    return f"{sec * 1e6:.1f} µs" if sec < 1e-3 else f"{sec * 1e3:.2f} ms"


def gpu_usable() -> tuple[bool, str]:
    """(True, '') when a CUDA GPU and CuPy can run crypto kernels, else (False, why not)."""
    from noodle.devices import detect

    reason = detect.gpu_unavailable_reason()
    if reason is None and detect.gpu_count() > 0:
        return True, ""
    return False, reason or "no CUDA GPU was found"


def estimate(op: str, *, elements: int, bits: int = 64, exp_bits: int = 64, nbytes: int = 0,
             on_gpu: bool = False) -> dict[str, float]:
    """Estimated seconds of ``op`` on the CPU and on a GPU (transfers included when not ``on_gpu``)."""
    if op not in CRYPTO_OPS:
        raise CryptoValueError(f"unknown crypto op {op!r}; known: {', '.join(CRYPTO_OPS)}.")
    n = max(int(elements), 0)
    limbs = max(1, -(-int(bits) // 64))
    if op in ("aes_gcm_encrypt", "aes_gcm_decrypt"):
        cpu = _CPU_CALL + nbytes / _CPU_AES
        gpu = _GPU_LAUNCH + nbytes / _GPU_AES
        moved = 0 if on_gpu else 2 * nbytes
    else:
        mulmods = 1.0 if op == "modmul" else 1.5 * max(int(exp_bits), 1)
        if limbs == 1:
            cpu = _CPU_CALL + n * mulmods / (_CPU_MODMUL64 if op == "modmul" else _CPU_MULMOD64)
            gpu = _GPU_LAUNCH + n * mulmods / _GPU_MULMOD64
        else:  # gmpy2 one core; quadratic limbs times exponent length
            per = _CPU_POWMOD2048 * (limbs / 32) ** 2 * (mulmods / (1.5 * 2048))
            cpu = _CPU_CALL + n * per
            gpu = _GPU_LAUNCH + n * per / _GPU_BIGINT_SPEEDUP
        per_elem_bytes = 8 * limbs * (3 if op == "modpow" else 3) + 8 * limbs
        moved = 0 if on_gpu else n * per_elem_bytes
    return {"cpu": cpu, "gpu": gpu + moved / _PCIE}


def decide(op: str, *, elements: int, bits: int = 64, exp_bits: int = 64, nbytes: int = 0,
           on_gpu: bool = False, device: str = "auto", use_gpu: bool | None = None,
           gpu_threshold: int | None = None) -> CryptoDecision:
    """Where ``op`` runs. An explicit ``device`` ('cpu'/'gpu') or ``use_gpu`` is obeyed (a GPU that is
    not there raises DeviceUnavailableError); otherwise the CPU without a usable GPU, the CPU below
    ``gpu_threshold`` elements for host data, else the cheaper estimate."""
    if device not in ("auto", "cpu", "gpu", "cuda"):
        raise CryptoValueError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}.")
    if use_gpu is not None and not isinstance(use_gpu, bool):
        raise CryptoValueError(f"use_gpu must be True, False or None (decide), got {use_gpu!r}.")
    costs = estimate(op, elements=elements, bits=bits, exp_bits=exp_bits, nbytes=nbytes, on_gpu=on_gpu)
    want = "gpu" if device in ("gpu", "cuda") or use_gpu is True else ("cpu" if device == "cpu" or use_gpu is False
                                                                        else None)
    if want == "cpu":
        return CryptoDecision(op, "cpu", "the CPU was asked for", costs)
    usable, why = gpu_usable()
    if want == "gpu":
        if not usable:
            raise DeviceUnavailableError(f"{op} on the GPU was asked for, but {why}. Use device='auto' or "
                                         "'cpu', or install the GPU extra on a machine with a CUDA GPU.")
        return CryptoDecision(op, "gpu", "the GPU was asked for", costs)
    if not usable:
        return CryptoDecision(op, "cpu", f"no usable GPU ({why})", {"cpu": costs["cpu"]})
    if gpu_threshold is not None and elements < gpu_threshold and not on_gpu:
        return CryptoDecision(op, "cpu", f"{elements} elements is below gpu_threshold={gpu_threshold}", costs)
    best = min(costs, key=lambda k: costs[k])
    why_best = "lower estimated time" + ("" if on_gpu or best == "cpu" else ", PCIe transfers included")
    return CryptoDecision(op, best, why_best, costs)


__all__ = ["CRYPTO_OPS", "CryptoDecision", "decide", "estimate", "gpu_usable"]
