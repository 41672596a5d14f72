"""Crypto hot paths: elementwise modular arithmetic and authenticated matrix encryption, CPU and GPU.

Every backend computes the same bits: ``modmul``/``modpow`` equal Python's
``a * b % m`` and ``pow(b, e, m)`` elementwise; AES-256-GCM blobs decrypt with
plain ``cryptography``. Where an op runs is decided per op by
:mod:`noodle.crypto.placement`.

Example::

    import numpy as np
    import noodle as nd
    r = nd.crypto.modpow(np.arange(10, dtype=np.uint64), 65537, 2**61 - 1)
"""

from __future__ import annotations

from noodle._lazy import lazy_attributes

_LAZY = {
    "modmul": "noodle.crypto.modular:modmul",
    "modpow": "noodle.crypto.modular:modpow",
    "aes_matrix_encrypt": "noodle.crypto.aes:aes_matrix_encrypt",
    "aes_matrix_decrypt": "noodle.crypto.aes:aes_matrix_decrypt",
    "CryptoOp": "noodle.crypto.op:CryptoOp",
    "paillier": "noodle.crypto.paillier:",
    "decide": "noodle.crypto.placement:decide",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = list(_LAZY)
