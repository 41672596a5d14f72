"""examples/crypto_quickstart.py runs as written and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "crypto_quickstart.py"


def test_crypto_quickstart_runs():
    out = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "2^e mod n (big): True" in text and "same as modpow: True" in text
    assert "tampering detected" in text
    assert "Paillier a+b, 3a: [[11, 18], [33, 44]] [[3, -6], [9, 12]]" in text
