"""CryptoOp and crypto placement: the offload decision is per op (cost, transfers, threshold), explicit
choices are obeyed or refused clearly, and execute() gives the functions' results."""

from __future__ import annotations

import numpy as np
import pytest

import noodle as nd
from noodle.crypto import placement
from noodle.crypto.op import CryptoOp
from noodle.errors import CryptoValueError, DeviceUnavailableError

M61 = 2**61 - 1


@pytest.fixture
def with_gpu(monkeypatch):
    """The decision logic as on a GPU machine (the GPU's presence is an input of the decision)."""
    monkeypatch.setattr(placement, "gpu_usable", lambda: (True, ""))


def test_without_a_gpu_everything_runs_on_the_cpu_and_says_why():
    if placement.gpu_usable()[0]:
        pytest.skip("this machine has a GPU")
    d = placement.decide("modpow", elements=10**6, bits=62, exp_bits=62)
    assert d.device == "cpu" and "no usable GPU" in d.reason
    with pytest.raises(DeviceUnavailableError, match="GPU"):
        placement.decide("modpow", elements=10, device="gpu")
    with pytest.raises(DeviceUnavailableError):
        placement.decide("modmul", elements=10, use_gpu=True)


def test_the_threshold_depends_on_the_op(with_gpu):
    # a 62-bit modpow (~90 mulmods per element) pays for the transfer; a host-resident modmul does not
    powmod = placement.decide("modpow", elements=10**6, bits=62, exp_bits=62)
    modmul = placement.decide("modmul", elements=10**6, bits=62)
    assert powmod.device == "gpu" and powmod.costs["cpu"] / powmod.costs["gpu"] > 20
    assert modmul.costs["cpu"] / modmul.costs["gpu"] < 2
    assert placement.decide("modmul", elements=2000, bits=62).device == "cpu"
    # ...unless its data already lives on the GPU
    assert placement.decide("modmul", elements=10**7, bits=62, on_gpu=True).device == "gpu"
    # below gpu_threshold, host data stays on the CPU; costs are still reported
    d = placement.decide("modpow", elements=500, bits=62, exp_bits=62, gpu_threshold=1000)
    assert d.device == "cpu" and "gpu_threshold" in d.reason and set(d.costs) == {"cpu", "gpu"}
    # 2048-bit powmods are milliseconds each on a CPU core: worth a GPU early
    assert placement.decide("modpow", elements=2000, bits=2048, exp_bits=2048).device == "gpu"
    assert placement.decide("aes_gcm_encrypt", elements=1, nbytes=1 << 30, on_gpu=True).device == "gpu"
    assert placement.decide("modpow", elements=10**6, use_gpu=False).device == "cpu"


def test_bad_choices_are_clear_errors():
    with pytest.raises(CryptoValueError, match="device"):
        placement.decide("modpow", elements=1, device="tpu")
    with pytest.raises(CryptoValueError, match="use_gpu"):
        placement.decide("modpow", elements=1, use_gpu="yes")
    with pytest.raises(CryptoValueError, match="unknown crypto op"):
        placement.estimate("powmod", elements=1)
    with pytest.raises(CryptoValueError, match="modular_pow"):
        CryptoOp("modular_pw", 1, 2, 3)
    with pytest.raises(CryptoValueError, match="3 operands"):
        CryptoOp("modpow", 1, 2)
    with pytest.raises(CryptoValueError, match="use_gpu"):
        CryptoOp("modpow", 1, 2, 3, device="gpu")
    with pytest.raises(CryptoValueError, match="gpu_threshold"):
        CryptoOp("modpow", 1, 2, 3).explain(gpu_threshold=-1)


def test_explain_is_reachable_from_nd_explain():
    base = np.arange(5000, dtype=np.uint64)
    d = nd.explain("modpow", base, 65537, M61)
    assert d.op == "modpow" and d.device in ("cpu", "gpu") and d.costs["cpu"] > 0
    assert str(d).startswith("modpow -> ")


def test_execute_equals_the_functions_and_python():
    base = np.arange(1, 3001, dtype=np.uint64)
    got = CryptoOp("modular_pow", base, 65537, M61).execute(use_gpu=False)
    assert [int(v) for v in got] == [pow(int(b), 65537, M61) for b in base]
    got = CryptoOp("rsa_modular_multiply", base, base, M61).execute(gpu_threshold=10**9)
    assert [int(v) for v in got] == [int(b) * int(b) % M61 for b in base]


def test_aes_through_cryptoop_round_trips_and_hides_the_key():
    key = bytes(range(32))
    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    op = CryptoOp("aes_matrix_encrypt", m, key)
    assert key.hex() not in repr(op) and repr(key) not in repr(op)
    blob = op.execute()
    back = CryptoOp("aes_matrix_decrypt", blob, key).execute(use_gpu=False)
    assert back.dtype == m.dtype and np.array_equal(back, m)
