"""Train the fixer's language model from the Python code installed on this machine.

Why a command anyone can rerun: the model ships inside the package, so how it
was made must be checkable. ``python -m noodle.fixer.train`` reads the files
:mod:`noodle.fixer.corpus` picks (the standard library and permissively
licensed site-packages, held-out files excluded), lexes them on ``--jobs``
processes, counts n-grams with NumPy (training may use it; loading never
does), estimates interpolated modified Kneser-Ney, prunes rare n-grams and
renormalizes, and writes ``lm.bin`` plus ``lm.json`` (what it was trained on,
how big it is, its held-out perplexity and a ranking sanity check). The same
files give the same bytes: nothing depends on timing, process order or hash
seeds (the metadata's timings aside, which live in the JSON, not the model).

Example::

    python -m noodle.fixer.train --max-files 200 --out /tmp/lm   # a quick one
    python -m noodle.fixer.train                                 # the shipped one (a few minutes)
    python -m noodle.fixer.train --reranker                      # the reranker (noodle.fixer.rerank_train)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import random
import sys
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from noodle.fixer import corpus
from noodle.fixer.lexer import KEYWORDS, NAME_SYM, fixed_symbols, lex, symbols
from noodle.fixer.lm import BO_SCALE, FORMAT_VERSION, LP_SCALE, NGramLM, default_path, fingerprint

__all__ = ["build_model", "choose_names", "main", "ranking_check", "recovery_check", "symbolize_files", "train"]

UNK = "<unk>"
DEFAULT_ORDER = 5
DEFAULT_NAMES = 1000            # identifiers kept as themselves (the rest become <NAME>)
MIN_NAME_FILES = 5              # ... and only those used in at least this many files
DEFAULT_MIN_COUNTS = (1, 2, 3, 4, 4, 4)   # keep an n-gram of order k seen at least this often
LOAD_FACTOR = 0.7


# --- reading the corpus -------------------------------------------------------------------------

def _symbolize(path: str) -> str | None:
    """One file's symbols (every name as itself), joined by NUL; None when the file does not parse."""
    p = Path(path)
    if not corpus.parses(p):
        return None
    return "\x00".join(symbols(lex(p.read_text(encoding="utf-8"))))


def symbolize_files(paths: Sequence[Path], jobs: int = 2) -> list[list[str]]:
    """Symbol sequences of the files that parse, in the order of ``paths``."""
    names = [str(p) for p in paths]
    if jobs > 1 and len(names) > 8:
        ctx = multiprocessing.get_context("spawn" if sys.platform == "win32" else "fork")
        with ctx.Pool(jobs) as pool:
            joined = pool.map(_symbolize, names, chunksize=8)
    else:
        joined = [_symbolize(n) for n in names]
    return [j.split("\x00") for j in joined if j is not None]


def choose_names(seqs: Sequence[Sequence[str]], max_names: int = DEFAULT_NAMES,
                 min_files: int = MIN_NAME_FILES) -> list[str]:
    """The identifiers kept as themselves: the ones used in the most files (not the most often, so a
    name one big file repeats does not crowd out ``self`` and ``len``)."""
    fixed = set(fixed_symbols())
    df: Counter[str] = Counter()
    for seq in seqs:
        df.update({s for s in seq if s not in fixed and s not in KEYWORDS and s.isidentifier()})
    ranked = sorted((n for n, c in df.items() if c >= min_files), key=lambda n: (-df[n], n))
    return ranked[:max_names]


# --- estimating the model -------------------------------------------------------------------------

def _discounts(adjusted: Any) -> tuple[float, float, float]:
    """Modified Kneser-Ney's D1, D2, D3+ from the count-of-counts (Chen & Goodman's estimates)."""
    import numpy as np

    n = [int(np.count_nonzero(adjusted == r)) for r in (1, 2, 3, 4)]
    if min(n) == 0:
        return 0.5, 1.0, 1.5
    y = n[0] / (n[0] + 2 * n[1])
    d = (1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2])
    return (min(max(d[0], 0.05), 0.95), min(max(d[1], 0.1), 1.9), min(max(d[2], 0.1), 2.9))


def _next_prime(n: int) -> int:
    def prime(k: int) -> bool:
        if k < 2 or k % 2 == 0:
            return k == 2
        return all(k % d for d in range(3, int(k ** 0.5) + 1, 2))

    while not prime(n):
        n += 1
    return n


def _table(keys: Any, lps: Any, bos: Any | None = None) -> tuple[array, array, array | None, int]:
    """An open-addressing table of fingerprints (see :mod:`noodle.fixer.lm`): key k's home slot is
    ``k * MIX % P``, linear probing, no wrap-around (the arrays run past P until a probe run ends on
    an empty slot). A P under which two keys that share a probe run share a fingerprint is skipped,
    so every stored n-gram is found exactly."""
    n = len(keys)
    mod = _next_prime(int(n / LOAD_FACTOR) + 1)
    klist = keys.tolist()
    while True:
        slots = [0] * (mod + 64)
        where = [0] * n
        clash = False
        for j, k in enumerate(klist):
            h, fp = fingerprint(k)
            s = h % mod
            while slots[s]:
                if slots[s] == fp:
                    clash = True
                    break
                s += 1
                if s == len(slots):
                    slots.extend([0] * 64)
            if clash:
                break
            slots[s] = fp
            where[j] = s
        if not clash:
            break
        mod = _next_prime(mod + 1)
    if slots[-1]:
        slots.append(0)
    size = len(slots)
    lp_q = [0] * size
    for j, x in zip(where, lps.tolist()):
        lp_q[j] = min(65535, max(0, round(x / LP_SCALE)))
    bo_arr = None
    if bos is not None:
        bo_q = [0] * size
        for j, x in zip(where, bos.tolist()):
            bo_q[j] = min(32767, max(-32768, round(x / BO_SCALE)))
        bo_arr = array("h", bo_q)
    return array("I", slots), array("H", lp_q), bo_arr, mod


def build_model(seqs: Sequence[Sequence[int]], symbols_by_id: list[str], order: int,
                min_counts: Sequence[int] = DEFAULT_MIN_COUNTS) -> tuple[NGramLM, dict[str, Any]]:
    """Interpolated modified Kneser-Ney over id sequences (each starts with <s>, ends with </s>),
    pruned to n-grams of order k seen at least ``min_counts[k-1]`` times, backoffs renormalized so
    the pruned model still sums to one. Returns the model and its statistics (n-grams seen and
    kept per order, the discounts)."""
    import numpy as np

    nvocab = len(symbols_by_id)
    bits = max(1, (nvocab - 1).bit_length())
    if order * bits > 64:
        raise ValueError(f"order {order} needs {order * bits} bits per key with {nvocab} symbols; keep fewer names")
    mins = list(min_counts) + [min_counts[-1]] * order
    if any(mins[k] < mins[k - 1] for k in range(1, order)):
        raise ValueError("min_counts must not decrease with the order (pruning relies on it)")
    B = np.uint64(bits)
    bos = symbols_by_id.index("<s>")

    flat = np.fromiter((i for seq in seqs for i in (*seq, 0)), dtype=np.uint64)
    raw: list[tuple[Any, Any]] = []            # per order: sorted unique keys, raw counts
    keys = flat
    valid = flat != 0
    for k in range(1, order + 1):
        if k > 1:
            keys = (keys[:-1] << B) | flat[k - 1:]
            valid = valid[:-1] & (flat[k - 1:] != 0)
        u, c = np.unique(keys[valid], return_counts=True)
        raw.append((u, c.astype(np.int64)))
    del flat, keys, valid

    uni_lp = np.zeros(nvocab)
    uni_bo = np.zeros(nvocab)
    kept_keys: list[Any] = []
    kept_lp: list[Any] = []
    kept_bo: list[Any] = []
    prev_keys = prev_p = None                  # the kept (k-1)-grams and their probabilities
    stats: dict[str, Any] = {"ngrams_seen": {}, "ngrams_kept": {}, "discounts": {}}
    for k in range(1, order + 1):
        u, c = raw[k - 1]
        if k == order:
            a = c.copy()
        else:                                  # continuation counts: distinct left extensions
            up = raw[k][0]
            suffix = up & np.uint64((1 << (bits * k)) - 1)
            su, sc = np.unique(suffix, return_counts=True)
            a = np.zeros(len(u), dtype=np.int64)
            a[np.searchsorted(u, su)] = sc
            first = u >> np.uint64(bits * (k - 1))
            starts_bos = first == bos
            a[starts_bos] = c[starts_bos]      # nothing precedes <s>: its n-grams keep raw counts
            if k == 1:
                a[u == bos] = 0                # <s> is never predicted
        d1, d2, d3 = _discounts(a)
        disc = np.where(a == 0, 0.0, np.where(a == 1, d1, np.where(a == 2, d2, d3)))
        ctx = u >> B if k > 1 else np.zeros(len(u), dtype=np.uint64)
        cu, cstart, cinv = np.unique(ctx, return_index=True, return_inverse=True)
        total = np.add.reduceat(a, cstart).astype(np.float64)
        n1 = np.add.reduceat((a == 1).astype(np.int64), cstart)
        n2 = np.add.reduceat((a == 2).astype(np.int64), cstart)
        n3 = np.add.reduceat((a >= 3).astype(np.int64), cstart)
        safe = np.where(total > 0, total, 1.0)
        gamma = np.where(total > 0, (d1 * n1 + d2 * n2 + d3 * n3) / safe, 1.0)
        alpha = np.maximum(a - disc, 0.0) / safe[cinv]

        keep = c >= mins[k - 1]
        stats["ngrams_seen"][str(k)] = int(len(u))
        stats["ngrams_kept"][str(k)] = int(keep.sum())
        stats["discounts"][str(k)] = [round(d1, 4), round(d2, 4), round(d3, 4)]
        ku, kalpha, kinv = u[keep], alpha[keep], cinv[keep]
        if k == 1:
            p = np.full(nvocab, gamma[0] / (nvocab - 1))
            p[0] = 0.0
            p[ku.astype(np.int64)] += kalpha
            uni_lp[:] = np.log(np.where(p > 0, p, 1e-30))
            uni_lp[0] = -99.0
            prev_keys, prev_p = np.arange(nvocab, dtype=np.uint64), p
            continue
        lower = ku & np.uint64((1 << (bits * (k - 1))) - 1)
        pos = np.searchsorted(prev_keys, lower)
        if not np.array_equal(prev_keys[np.minimum(pos, len(prev_keys) - 1)], lower):
            raise AssertionError("a kept n-gram's suffix was pruned (min_counts must not decrease)")
        plow = prev_p[pos]
        pk = kalpha + gamma[kinv] * plow
        # renormalized backoff of each context h (a kept (k-1)-gram): (1 - sum P_k) / (1 - sum P_{k-1})
        kctx = ku >> B
        hu, hstart = np.unique(kctx, return_index=True)
        s_hi = np.add.reduceat(pk, hstart)
        s_lo = np.add.reduceat(plow, hstart)
        bo = np.log(np.maximum(1.0 - s_hi, 1e-12) / np.maximum(1.0 - s_lo, 1e-12))
        if k == 2:
            uni_bo[hu.astype(np.int64)] = bo
        else:
            hpos = np.searchsorted(prev_keys, hu)
            kept_bo[-1][hpos] = bo
        kept_keys.append(ku)
        kept_lp.append(np.log(pk))
        kept_bo.append(np.zeros(len(ku)))
        prev_keys, prev_p = ku, pk

    empty = np.zeros(0)
    if order > 2:
        mid_fp, mid_lp, mid_bo, mid_mod = _table(np.concatenate(kept_keys[:-1]), np.concatenate(kept_lp[:-1]),
                                                 np.concatenate(kept_bo[:-1]))
    else:
        mid_fp, mid_lp, mid_bo, mid_mod = _table(empty.astype(np.uint64), empty, empty)
    if order > 1:
        top_fp, top_lp, _, top_mod = _table(kept_keys[-1], kept_lp[-1])
    else:
        top_fp, top_lp, _, top_mod = _table(empty.astype(np.uint64), empty)
    assert mid_bo is not None
    model = NGramLM(order, bits, list(symbols_by_id), uni_lp.tolist(), uni_bo.tolist(),
                    (mid_fp, mid_lp, mid_bo, mid_mod), (top_fp, top_lp, top_mod))
    return model, stats


# --- checks ------------------------------------------------------------------------------------------

def heldout_perplexity(model: NGramLM, seqs: Sequence[Sequence[str]]) -> tuple[float, int]:
    """(perplexity, symbols scored) of the model over held-out symbol sequences."""
    total = 0.0
    n = 0
    for seq in seqs:
        ids = model.ids(seq)
        total += model.score_ids(ids)
        n += len(ids) - 1
    return (math.exp(-total / n) if n else float("nan")), n


def ranking_check(model: NGramLM, seqs: Sequence[Sequence[str]], trials: int = 500, seed: int = 0) -> float:
    """How often a held-out sequence outscores itself with one symbol deleted or one inserted (a
    symbol drawn from what code contains: the corpus' own symbols), at a random place: a quick
    measure of ranking power (the bench measures the real thing)."""
    rng = random.Random(seed)
    pool = [s for seq in seqs for s in seq[1:-1]]
    wins = 0
    order = model.order
    done = 0
    while done < trials:
        seq = seqs[rng.randrange(len(seqs))]
        if len(seq) < 4:
            continue
        ids = model.ids(seq)
        i = rng.randrange(1, len(ids) - 1)
        if rng.random() < 0.5:
            bad = ids[:i] + ids[i + 1:]
            good_score = model.score_ids(ids, i, min(len(ids), i + order))
            bad_score = model.score_ids(bad, i, min(len(bad), i + order - 1))
        else:
            new = model.id_of(rng.choice(pool))
            if new == ids[i]:
                continue
            bad = ids[:i] + [new] + ids[i:]
            good_score = model.score_ids(ids, i, min(len(ids), i + order - 1))
            bad_score = model.score_ids(bad, i, min(len(bad), i + order))
        wins += good_score > bad_score
        done += 1
    return wins / trials


def recovery_check(model: NGramLM, seqs: Sequence[Sequence[str]], trials: int = 500, seed: int = 0,
                   common: int = 60, reach: int = 2) -> tuple[float, float]:
    """(share at rank 1, share in the top 5) of the original among its one-symbol repairs: a held-out
    sequence loses a symbol (or gains one of the ``common`` commonest), and every insertion of a
    common symbol (or every deletion) within ``reach`` positions of the damage is ranked by the
    model alone (trials where the original is not among the candidates, a deleted rare symbol, are
    drawn again; ties with the original count for it). Closer to what the engine does than
    :func:`ranking_check`, still not the bench: no parser, no edit costs, no CPython error location."""
    rng = random.Random(seed)
    order = model.order
    freq: Counter[str] = Counter(s for seq in seqs[::5] for s in seq[1:-1])
    pool = [model.id_of(s) for s, _ in freq.most_common(common)]
    top1 = top5 = done = 0
    while done < trials:
        ids = model.ids(seqs[rng.randrange(len(seqs))])
        if len(ids) < 10:
            continue
        i = rng.randrange(1, len(ids) - 1)
        scored: list[tuple[float, bool]] = []
        if rng.random() < 0.5:
            bad = ids[:i] + ids[i + 1:]
            for j in range(max(1, i - reach), min(len(bad), i + reach + 1)):
                base = model.score_ids(bad, j, j + order - 1)
                for sym in pool:
                    cand = bad[:j] + [sym] + bad[j:]
                    scored.append((model.score_ids(cand, j, j + order) - base, cand == ids))
        else:
            bad = ids[:i] + [pool[rng.randrange(len(pool))]] + ids[i:]
            for j in range(max(1, i - reach), min(len(bad) - 1, i + reach + 1)):
                cand = bad[:j] + bad[j + 1:]
                scored.append((model.score_ids(cand, j, j + order - 1) - model.score_ids(bad, j, j + order),
                               cand == ids))
        if not any(ok for _, ok in scored):
            continue                                   # the deleted symbol is not a common one
        scored.sort(key=lambda x: -x[0])
        best = scored[0][0]
        top1 += any(ok for sc, ok in scored if sc >= best - 1e-9)
        top5 += any(ok for _, ok in scored[:5])
        done += 1
    return top1 / trials, top5 / trials


# --- the command --------------------------------------------------------------------------------------

def train(out: Path | None = None, order: int = DEFAULT_ORDER, max_files: int | None = None, jobs: int = 2,
          names: int = DEFAULT_NAMES, min_counts: Sequence[int] = DEFAULT_MIN_COUNTS,
          files: Sequence[Path] | None = None, heldout: Sequence[Path] | None = None,
          check: bool = True) -> dict[str, Any]:
    """Train, write ``lm.bin`` and ``lm.json`` under ``out`` (default: the package's data folder), and
    return the metadata. ``files``/``heldout`` replace the corpus (tests train on a tiny one)."""
    import noodle

    t0 = time.perf_counter()
    out = Path(out) if out is not None else default_path().parent
    whole_corpus = files is None and heldout is None and max_files is None
    if files is None:
        files = corpus.training_files(check_parse=False)
    if heldout is None:
        heldout = corpus.heldout_files(check_parse=False)
    if max_files is not None:
        step = max(1, len(files) // max_files)
        files = list(files)[::step][:max_files]
        heldout = list(heldout)[::max(1, step)][:max(1, max_files // 9)]
    seqs = symbolize_files(files, jobs)
    t_lex = time.perf_counter() - t0
    kept_names = choose_names(seqs, names)
    vocab = [UNK, *fixed_symbols(), *kept_names]
    symbols_by_id = ["<pad>", *vocab]
    index = {s: i for i, s in enumerate(symbols_by_id) if i}
    unk, name_id = index[UNK], index[NAME_SYM]
    kw = KEYWORDS
    id_seqs = [[index.get(s) or (name_id if s.isidentifier() and s not in kw else unk) for s in seq]
               for seq in seqs]
    ntokens = sum(len(s) - 1 for s in id_seqs)
    model, stats = build_model(id_seqs, symbols_by_id, order, min_counts)
    del id_seqs
    blob = model.to_bytes()
    t_build = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "lm.bin").write_bytes(blob)

    meta: dict[str, Any] = {
        # what caches key repairs on: the same bytes give the same version, on any machine
        "version": f"{FORMAT_VERSION}.{order}-{hashlib.sha256(blob).hexdigest()[:16]}",
        "format_version": FORMAT_VERSION, "noodle_version": getattr(noodle, "__version__", "unknown"),
        "python": sys.version.split()[0], "order": order, "id_bits": model.bits,
        "vocab_size": len(vocab), "names_kept": len(kept_names), "min_counts": list(min_counts)[:order],
        **stats, "artifact_bytes": len(blob),
        "training_files": len(seqs), "training_files_skipped": len(files) - len(seqs),
        "training_tokens": ntokens, "heldout_files": len(heldout),
        "lex_seconds": round(t_lex, 1), "build_seconds": round(t_build, 1), "max_files": max_files,
    }
    if whole_corpus:
        try:
            meta["corpus"] = corpus.describe()
        except Exception as e:                                   # pragma: no cover - metadata only
            meta["corpus"] = {"error": str(e)}
    if check and heldout:
        held = symbolize_files(heldout, jobs)
        ppl, n = heldout_perplexity(model, held)
        r1, r5 = recovery_check(model, held)
        meta.update(heldout_tokens=n, heldout_perplexity=round(ppl, 3),
                    ranking_check=round(ranking_check(model, held), 3), ranking_check_trials=500,
                    recovery_at_1=round(r1, 3), recovery_at_5=round(r5, 3), recovery_trials=500)
    meta["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "lm.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m noodle.fixer.train``: see the module docstring (``--reranker`` trains the
    reranker instead: :mod:`noodle.fixer.rerank_train`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--reranker" in argv:
        from noodle.fixer import rerank_train

        argv.remove("--reranker")
        return rerank_train.main(argv)
    ap = argparse.ArgumentParser(prog="python -m noodle.fixer.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for lm.bin and lm.json (default: the package's)")
    ap.add_argument("--order", type=int, default=DEFAULT_ORDER, help="n-gram order (default %(default)s)")
    ap.add_argument("--max-files", type=int, default=None, help="train on a spread sample of this many files")
    ap.add_argument("--jobs", type=int, default=2, help="processes that lex (default %(default)s)")
    ap.add_argument("--names", type=int, default=DEFAULT_NAMES, help="identifiers kept (default %(default)s)")
    ap.add_argument("--min-counts", default=",".join(map(str, DEFAULT_MIN_COUNTS)),
                    help="per-order count cutoffs, comma-separated (default %(default)s)")
    ap.add_argument("--no-check", action="store_true", help="skip the held-out perplexity and ranking check")
    args = ap.parse_args(argv)
    try:
        mins = tuple(int(x) for x in args.min_counts.split(","))
    except ValueError:
        ap.error("--min-counts takes integers separated by commas, e.g. 1,1,2,2")
    meta = train(args.out, args.order, args.max_files, args.jobs, args.names, mins, check=not args.no_check)
    show = {k: v for k, v in meta.items() if k != "corpus"}
    print(json.dumps(show, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
