"""The language model: a safe, quick load; a real distribution; valid code preferred; reproducible training."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from noodle.errors import NoodleError
from noodle.fixer import corpus, lm
from noodle.fixer.lexer import lex, symbols
from noodle.fixer.lm import NGramLM, default_path, load_default

HERE = Path(__file__).resolve().parent
SAMPLE = '''import os


def walk(root, skip=None):
    """Yield files."""
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if skip is not None and name in skip:
            continue
        if os.path.isdir(path):
            yield from walk(path, skip)
        else:
            yield path


class Counter:
    def __init__(self, start=0):
        self.value = start

    def add(self, n=1):
        self.value += n
        return self.value
'''


@pytest.fixture(scope="module")
def model() -> NGramLM:
    return load_default()


def _ids(m: NGramLM, source: str) -> list[int]:
    return m.ids(symbols(lex(source), m.vocab))


def test_shipped_artifact_and_metadata(model: NGramLM) -> None:
    assert default_path().is_file()
    meta = model.meta
    assert meta["format_version"] == lm.FORMAT_VERSION and meta["order"] == model.order
    for key in ("training_files", "training_tokens", "heldout_perplexity", "artifact_bytes", "vocab_size"):
        assert key in meta, key
    assert meta["artifact_bytes"] == default_path().stat().st_size
    assert {"self", "len", "print", "range"} <= model.vocab


def test_loader_never_unpickles() -> None:
    """The loader is plain reads into arrays: no pickle/marshal in its code, none imported to load it."""
    text = Path(lm.__file__).read_text(encoding="utf-8")
    for word in ("import pickle", "pickle.", "marshal", "eval(", "exec(", "numpy"):
        assert word not in text, word
    code = ("import sys; from noodle.fixer.lm import load_default; m = load_default(); "
            "m.score_ids(m.ids(['<s>', 'x'])); "
            "print(sorted(k for k in ('pickle', 'numpy', '_pickle') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("context", [
    "", "x = ", "def f(", "for i in range(", "if x ==", "return self.", "import os\n", "  $ ? ",
])
def test_distribution_sums_to_one(model: NGramLM, context: str) -> None:
    ids = _ids(model, context)[:-2] if context else [model.bos_id]    # drop <NL>/</s> lex adds
    ctx = ids[-(model.order - 1):]
    total = sum(math.exp(model.logprob(ctx, w)) for w in range(1, len(model.symbols)))
    assert total == pytest.approx(1.0, abs=2e-3)


def test_score_ids_is_the_sum_of_logprobs(model: NGramLM) -> None:
    ids = _ids(model, SAMPLE)
    m = model.order - 1
    by_position = [model.logprob(ids[max(0, i - m):i], ids[i]) for i in range(1, len(ids))]
    assert model.score_ids(ids) == pytest.approx(sum(by_position), abs=1e-6)
    assert model.score_ids(ids, 10, 30) == pytest.approx(sum(by_position[9:29]), abs=1e-6)
    assert model.perplexity(ids) == pytest.approx(math.exp(-sum(by_position) / len(by_position)))
    assert model.score_ids(ids, 5, 5) == 0.0


def test_ids_map_unknowns(model: NGramLM) -> None:
    assert model.ids(["self", "zzz_not_a_kept_name", "<weird>", "def"]) == [
        model.index["self"], model.name_id, model.unk_id, model.index["def"]]


def test_valid_code_outscores_a_deletion(model: NGramLM) -> None:
    """Deleting a token makes the code less likely in most cases (held-out files: never trained on)."""
    rng = random.Random(3)
    files = corpus.heldout_files(check_parse=False)[:40]
    seqs = [model.ids(symbols(lex(p.read_text(encoding="utf-8")), model.vocab)) for p in files
            if p.stat().st_size < 200_000]
    wins = trials = 0
    while trials < 300:
        ids = seqs[rng.randrange(len(seqs))]
        if len(ids) < 10:
            continue
        i = rng.randrange(1, len(ids) - 1)
        bad = ids[:i] + ids[i + 1:]
        good = model.score_ids(ids, i, i + model.order)
        worse = model.score_ids(bad, i, i + model.order - 1)
        wins += good > worse
        trials += 1
    assert wins / trials > 0.85


def test_broken_code_is_less_likely(model: NGramLM) -> None:
    good = _ids(model, "def f(x):\n    return x + 1\n")
    for broken in ("def f(x)\n    return x + 1\n", "def f(x:\n    return x + 1\n", "def f(x):\n    return x +\n"):
        assert model.score_ids(_ids(model, broken)) < model.score_ids(good), broken


def test_corrupt_artifacts_are_refused(tmp_path: Path, model: NGramLM) -> None:
    blob = default_path().read_bytes()
    for name, data in (("magic", b"NOTALM!!" + blob[8:]), ("short", blob[: len(blob) // 2]), ("empty", b""),
                       ("long", blob + b"\0\0\0\0")):
        p = tmp_path / f"{name}.bin"
        p.write_bytes(data)
        with pytest.raises(NoodleError, match="python -m noodle.fixer.train"):
            NGramLM.load(p)
    assert NGramLM.from_bytes(model.to_bytes()).to_bytes() == blob       # a faithful round trip


def test_heldout_disjoint_from_training() -> None:
    train = corpus.training_files(check_parse=False)
    held = corpus.heldout_files(check_parse=False)
    assert train and held and not set(train) & set(held)
    assert 0.05 < len(held) / (len(train) + len(held)) < 0.15
    assert corpus.is_heldout("stdlib/json/decoder.py") == corpus.is_heldout("stdlib/json/decoder.py")
    info = corpus.describe()
    assert info["heldout_files"] == len(held) and info["train_files"] == len(train)
    assert all(d["name"].lower() != "noodle" for d in info["distributions_used"])
    assert not any(p.parts[-2] in ("test", "tests") for p in train)


def test_licences() -> None:
    ok = corpus._licence_ok
    assert ok("MIT") and ok("BSD-3-Clause") and ok("Apache-2.0 OR BSD-3-Clause")
    assert ok("BSD-2-Clause AND Apache-2.0 WITH LLVM-exception") and ok("PSF-2.0")
    assert not ok("LGPL-3.0-only") and not ok("GPL-3.0-or-later") and not ok("MPL-2.0")
    assert not ok("MIT AND GPL-2.0") and not ok("")


def test_training_is_reproducible(tmp_path: Path) -> None:
    from noodle.fixer import train

    files = sorted(Path(json.__file__).parent.glob("*.py"))     # a tiny corpus: the json package
    held = [Path(random.__file__)]
    metas = []
    for run in ("a", "b"):
        metas.append(train.train(tmp_path / run, order=3, jobs=1, names=50, min_counts=(1, 1, 2),
                                 files=files, heldout=held))
    a, b = (tmp_path / "a" / "lm.bin").read_bytes(), (tmp_path / "b" / "lm.bin").read_bytes()
    assert a == b
    small = NGramLM.load(tmp_path / "a" / "lm.bin")
    assert small.order == 3 and small.meta["training_files"] == len(files)
    assert metas[0]["heldout_perplexity"] == metas[1]["heldout_perplexity"] > 1
    ids = small.ids(symbols(lex("import json\n"), small.vocab))
    for ctx in ([], ids[:1], ids[:2]):
        total = sum(math.exp(small.logprob(ctx, w)) for w in range(1, len(small.symbols)))
        assert total == pytest.approx(1.0, abs=2e-3)
