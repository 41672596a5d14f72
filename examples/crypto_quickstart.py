"""noodle.crypto: modular arithmetic over arrays, AES-GCM matrix blobs, CryptoOp and Paillier.

Run: python examples/crypto_quickstart.py
"""

from __future__ import annotations

import os

import numpy as np

import noodle as nd
from noodle.crypto import CryptoOp, aes_matrix_decrypt, aes_matrix_encrypt, modmul, modpow, paillier


def main() -> None:
    m = 2**61 - 1
    x = np.arange(1, 1001, dtype=np.uint64)
    y = modpow(x, 65537, m)
    assert [int(v) for v in y[:5]] == [pow(i, 65537, m) for i in range(1, 6)]
    print("modpow:", y[:3], "modmul:", modmul(x[:3], x[:3], m))
    rsa_n = (2**127 - 1) * (2**89 - 1)                   # object arrays carry big integers
    big = np.array([2**100 + 7, 2**120 + 3], dtype=object)
    print("2^e mod n (big):", modpow(big, 65537, rsa_n)[0] == pow(2**100 + 7, 65537, rsa_n))

    op = CryptoOp("modular_pow", x, 65537, m)
    print(op.explain(gpu_threshold=1000))                  # where it would run, and why
    print("same as modpow:", np.array_equal(op.execute(), y))
    print(nd.explain("modmul", x, x, m))

    key = os.urandom(32)
    blob = aes_matrix_encrypt(np.eye(3, dtype=np.float32), key, aad=b"demo")
    print("blob bytes:", len(blob), aes_matrix_decrypt(blob, key, aad=b"demo").dtype)
    try:
        aes_matrix_decrypt(blob[:-1] + bytes([blob[-1] ^ 1]), key, aad=b"demo")
    except nd.errors.IntegrityError as exc:
        print("tampering detected:", exc)

    pub, priv = paillier.generate_keypair(1024)
    a = pub.encrypt(np.array([[1, -2], [3, 4]]))
    b = pub.encrypt(np.array([[10, 20], [30, 40]]))
    print("Paillier a+b, 3a:", priv.decrypt(a + b).tolist(), priv.decrypt(a * 3).tolist())


if __name__ == "__main__":
    main()
