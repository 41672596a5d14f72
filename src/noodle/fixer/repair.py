"""``fix``: repair a text's syntax errors, one error per round, best first by model score.

Why this shape: CPython reports only the first error, so a text is repaired in rounds. A round
takes the block that reproduces the current first error (:mod:`noodle.fixer.localize`),
scores every proposal for it (:mod:`noodle.fixer.candidates`; cheap: a few n-gram lookups
each) and parses the block with the proposals in score order, keeping those that get past
the error: the block parses (a complete repair, once the whole text compiles too), or its
first error is now later (a partial repair: ``print x`` after its '(', or the first of two
errors in one function). Parsing stops at k complete repairs, so the parse checks do not set
the latency. Partial repairs wait in a best-first frontier and the best one gets the next
round, until none can beat the best complete repair (every further edit costs at least
``rank.EDIT_COST``), or the rounds or the time budget run out.

With the learned reranker on (the default where its artifact loads; ``rerank=False`` or
``NOODLE_FIXER_RERANK=0`` turns it off), a text whose n-gram answer is not a clear one-step
winner (:func:`_confident`) is searched again, reusing the rounds already run, with each
round's goals scored as one batch by :mod:`noodle.fixer.rerank`: a node's score becomes the sum over its path of the log of the
reranker's calibrated probability that each step is a true repair, so a second edit pays what
the evidence says it costs instead of a fixed penalty, and the best-first search over errors
(fix, re-parse, next error) follows those sums. The reranker only reorders what the parser
accepted, so it never changes which texts compile.

Every returned candidate is checked once more on the whole text with ``compile``: the block
parse is the filter, the whole-text compile the guarantee. Nothing here is random and nothing
iterates a set or a dict keyed by strings in an order that matters, so results do not depend
on ``PYTHONHASHSEED``.

Example::

    from noodle.fixer import fix
    r = fix("def f(x)\\n    return x\\n")
    print(r.kind, r.source, r.edits)    # simple def f(x):\\n ... (Edit(1, 8, '', ':'),)
"""

from __future__ import annotations

import bisect
import difflib
import functools
import heapq
import re
import time
from dataclasses import dataclass
from typing import Protocol

from noodle.errors import FixArgumentError
from noodle.fixer.candidates import propose
from noodle.fixer.context import Change, Context, apply_changes
from noodle.fixer.fstrings import parses_as_expression
from noodle.fixer.lexer import lex
from noodle.fixer.localize import Checker, Layout, ParseError, find_region, split_lines
from noodle.fixer.rank import EDIT_COST, Scorer, default_scorer
from noodle.fixer.rerank_features import RoundInfo, Step
from noodle.fixer.result import Candidate, Edit, FixResult
from noodle.fixer.telemetry import record_fix

__all__ = ["FixArgumentError", "fix"]

#: rounds (one error each, on some partial repair) before giving up
MAX_ROUNDS = 30
#: rounds spent on partial repairs that score better than the best complete one
EXTRA_ROUNDS = 2
#: parse checks one round may spend
MAX_CHECKS = 120
#: a round stops parsing proposals this much (log-odds) below its best complete repair
MARGIN = 15.0
#: proposals kept per round (the rest score too low to be parsed within the budget)
PROPOSALS = 80
#: seconds after which the search returns what it has (a round always gets its first proposals)
TIME_BUDGET = 0.8
#: seconds one round may spend scoring proposals (the rest of its time goes to parse checks)
ROUND_BUDGET = 0.25
#: n-gram log-odds by which a one-step repair must lead the next for the reranker to be skipped
#: (loading ONNX Runtime costs a fresh process ~0.2-0.3 s; see _confident)
CONFIDENT = 4.0


class StepScorer(Protocol):
    """What rescores a round's goals: log-scores for the steps (one batch), or None to keep the
    n-gram scores (the reranker did not load)."""

    def score_steps(self, info: RoundInfo, steps: list[Step]) -> list[float] | None: ...


@dataclass(slots=True)
class _Node:
    """A state of the search: the lines changed so far (against the input), its score, and the
    first error left (None once its block parses)."""

    changed: tuple[tuple[int, str], ...]
    score: float
    err: ParseError | None = None
    at: tuple[int, int] | None = None       # where its last round's edit starts
    edit: tuple[Change, ...] = ()           # its last round's changes
    depth: int = 0                          # rounds on its path


def _lines_of(base: list[str], node: _Node) -> list[str]:
    if not node.changed:
        return base
    out = list(base)
    for line, text in node.changed:
        out[line - 1] = text
    return out


def _child(base: list[str], lines: list[str], node: _Node, changes: tuple[Change, ...], score: float) -> _Node:
    new_lines = apply_changes(lines, changes)
    changed = dict(node.changed)
    for c in changes:
        text = new_lines[c.line - 1]
        if text == base[c.line - 1]:
            changed.pop(c.line, None)
        else:
            changed[c.line] = text
    return _Node(tuple(sorted(changed.items())), node.score + score, depth=node.depth + 1)


def _back(err: ParseError, changes: tuple[Change, ...]) -> ParseError:
    """The error's position in the text before the changes (an insertion before it on its line
    moved it right; moved back, an error that only shifted is the same error)."""
    col = err.col
    shift = 0
    for c in sorted((c for c in changes if c.line == err.line), key=lambda c: c.col):
        start = c.col + shift
        if err.col >= start + len(c.new):
            col -= len(c.new) - (c.end - c.col)
            shift += len(c.new) - (c.end - c.col)
        elif err.col >= start:
            col = c.col
    return ParseError(err.message, err.line, col, err.end_line, err.end_col, err.kind)


def _past(after: ParseError, before: ParseError, edited: tuple[int, int] | None = None) -> bool:
    """Whether a repair got past an error (both in the text before the edit).

    A later first error is progress. So is an error above the old one and above the edit, which
    the edit cannot have caused: an older error that CPython had reported second (its tokenizer
    reports an unterminated string or a bad indent before a parse error above it). An unclosed
    bracket is reported at its opener but found at the end of the text, so it counts as the
    furthest error there is: reaching it is progress, and a different unclosed bracket too.
    """
    here, there = (after.line, after.col), (before.line, before.col)
    end_after = "was never closed" in after.message
    end_before = "was never closed" in before.message
    if end_after or end_before:
        if end_after and end_before:
            return here != there
        if end_after:
            return True
        return edited is None or here < edited or after.line > edited[0]
    if here > there:
        return True
    return edited is not None and here < there and here < edited


class _Search:
    """One call's search: shared caches, deadline and counters."""

    def __init__(self, source: str, k: int, checker: Checker, scorer: Scorer, deadline: float,
                 steps: StepScorer | None = None,
                 memo: dict[tuple[tuple[int, str], ...], tuple[list[_Node], list[Step], RoundInfo]] | None = None,
                 ) -> None:
        self.base = split_lines(source)
        self.steps = steps
        self.memo = memo if memo is not None else {}
        self.reranked = False         # scores are the reranker's log-probabilities
        self.k = k
        self.checker = checker
        self.scorer = scorer
        self.deadline = deadline
        self.checks = 0
        self.rounds = 0
        self.layout = Layout.of(self.base, source)

    def note_stage(self, err: ParseError) -> None:
        """Check blocks with the full compiler when only the compiler objects ('return' outside
        a function): seen from the top-level block around the error, which the parser accepts.
        (The whole text is not parsed again for this: on a large file that costs as much as the
        first compile.)"""
        if self.checker.feature >= 0:
            return
        tops = self.layout.tops
        row = min(max(err.line, 1), len(self.base)) - 1
        k = bisect.bisect_right(tops, row) - 1
        first = tops[k] if k >= 0 else 0
        end = tops[k + 1] if k + 1 < len(tops) else len(self.base)
        if self.checker._parse("".join(self.base[first:end])) is None:
            self.checker.compile_stage = True

    def round(self, start: _Node, err: ParseError) -> list[_Node]:
        """Nodes (start plus one proposal) that get past ``err``: up to k whose block parses
        (``err`` None) and up to k whose first error is later than ``err`` (partial repairs,
        which a next round continues), scored by the n-gram or, with a step scorer, by it.

        What a round finds does not depend on how it is scored, so a second search over the
        same text (the reranked one after the n-gram one) takes the rounds the first one ran
        from ``memo`` and only scores them again.
        """
        self.rounds += 1
        got = self.memo.get(start.changed)
        if got is None:
            got = self.memo[start.changed] = self._explore(start, err)
        protos, stepped, info = got
        scores: list[float] | None = None
        if self.steps is not None and protos:
            scores = self.steps.score_steps(info, stepped)
            if scores is not None:
                self.reranked = True
        if scores is None:
            scores = [st.proposal.score for st in stepped]
        return [_Node(pr.changed, start.score + sc, pr.err, pr.at, pr.edit, pr.depth)
                for pr, sc in zip(protos, scores)]

    def _explore(self, start: _Node, err: ParseError) -> tuple[list[_Node], list[Step], RoundInfo]:
        """One round's goals (as templates), their steps and the round, for :meth:`round`.

        Proposals are parsed in score order and the round ends at k complete ones; a proposal's
        text is only built when it is the best one left.
        """
        lines = _lines_of(self.base, start)
        region, rerr = find_region(lines, err, self.checker, self.layout)
        ctx = Context(lines, region, rerr, self.scorer, min(self.deadline, time.perf_counter() + ROUND_BUDGET))
        goals: list[_Node] = []
        stepped: list[Step] = []
        complete = partial = 0
        seen: set[tuple[tuple[int, str], ...]] = {start.changed}
        checks = 0
        best = None
        proposals = propose(ctx, PROPOSALS)
        for rank, p in enumerate(proposals):
            if complete >= self.k or checks >= MAX_CHECKS:
                break
            if best is not None and p.score < best - MARGIN:
                break                 # e^-MARGIN as likely as a repair already found: not worth a parse
            if time.perf_counter() > self.deadline and (goals or checks > 40):
                break
            changes = ctx.changes(p)
            node = _child(self.base, lines, start, changes, p.score)
            if node.changed in seen:
                continue
            seen.add(node.changed)
            checks += 1
            nerr = region.error(_lines_of(self.base, node), self.checker)
            node.at = min((c.line, c.col) for c in changes)
            node.edit = changes
            if nerr is None:
                complete += 1
                goals.append(node)
                stepped.append(Step(p, rank, changes, None))
                best = p.score if best is None else best
            elif partial < self.k and _past(_back(nerr, changes), rerr, node.at):
                partial += 1          # partial repairs do not end the round: a complete one may follow
                node.err = nerr
                goals.append(node)
                stepped.append(Step(p, rank, changes, nerr))
        self.checks += checks
        info = RoundInfo(lines, rerr, region.last - region.first + 1, [p.score for p in proposals], start.depth)
        return goals, stepped, info

    def run(self, err: ParseError) -> list[_Node]:
        """Nodes whose whole text compiles, best first: best-first over partial repairs, one round
        (one error) at a time, until no partial repair can still beat the best complete one."""
        frontier: list[tuple[float, int, _Node, ParseError]] = [(0.0, 0, _Node((), 0.0), err)]
        counter = 1
        pool: list[_Node] = []
        seen: set[tuple[tuple[int, str], ...]] = set()
        extra = 0                 # rounds spent on partial repairs after a complete one was found
        while frontier and self.rounds < MAX_ROUNDS:
            neg, _, node, nerr = heapq.heappop(frontier)
            if pool:
                extra += 1
                # a further step costs at least EDIT_COST (n-gram), or at least nothing (log p <= 0)
                floor = 0.0 if self.reranked else EDIT_COST
                if -neg - floor < pool[0].score or len(pool) >= self.k or extra > EXTRA_ROUNDS:
                    break
            if time.perf_counter() > self.deadline and (pool or self.rounds >= 2):
                break
            for g in self.round(node, nerr):
                if g.changed in seen:
                    continue
                seen.add(g.changed)
                if g.err is None:
                    e2 = self.checker.file_error("".join(_lines_of(self.base, g)))
                    if e2 is None:
                        pool.append(g)
                        continue
                    if not _past(_back(e2, g.edit), nerr, g.at):
                        continue
                    g.err = e2
                heapq.heappush(frontier, (-g.score, counter, g, g.err))
                counter += 1
            pool.sort(key=lambda n: -n.score)
        return pool


def _confident(pool: list[_Node]) -> bool:
    """Whether the n-gram search's answer stands without the reranker: a one-step repair at least
    :data:`CONFIDENT` (log-odds) ahead of the next complete one, or the only one. On the bench's
    cases that is ~80% of one-error texts, and the reranker changed none of their answers; the
    others (and almost every text with several errors) are searched again with it."""
    if not pool:
        return False
    best = max(pool, key=lambda n: n.score)
    if best.depth != 1:
        return False
    rest = [n.score for n in pool if n is not best]
    return not rest or best.score - max(rest) >= CONFIDENT


def _check_args(source: object, k: object, filename: object, target_version: object,
                rerank: object = None) -> None:
    if rerank is not None and not isinstance(rerank, bool):
        raise FixArgumentError(f"fix() needs rerank as True, False or None (the default: on where the "
                               f"reranker's artifact loads, unless NOODLE_FIXER_RERANK=0), got {rerank!r}.")
    if not isinstance(source, str):
        raise FixArgumentError(
            f"fix() needs the source as a str, got {type(source).__name__}; decode bytes first "
            f"(e.g. data.decode('utf-8')).")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise FixArgumentError(f"fix() needs k (how many candidates to return) as an int >= 1, got {k!r}.")
    if not isinstance(filename, str):
        raise FixArgumentError(f"fix() needs filename as a str, got {type(filename).__name__}.")
    if target_version is not None:
        ok = (isinstance(target_version, tuple) and len(target_version) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) for v in target_version)
              and target_version[0] == 3 and 4 <= target_version[1] <= 99)
        if not ok:
            raise FixArgumentError(
                f"fix() needs target_version as a (3, minor) tuple such as (3, 9), or None for the running "
                f"Python; got {target_version!r}.")


def fix(source: str, *, k: int = 5, filename: str = "<string>",
        target_version: tuple[int, int] | None = None, rerank: bool | None = None) -> FixResult:
    """Repair the syntax errors of ``source``; up to ``k`` candidates that all compile, best first.

    ``source`` comes back unchanged when it already compiles (kind 'valid') or when no repair
    compiles within the search budget (kind 'unfixed'). ``target_version`` (3, minor) parses as
    that version would (a ``match`` statement is an error under (3, 9)). ``rerank`` turns the
    learned reranker on or off (None: on unless ``NOODLE_FIXER_RERANK=0``; where its artifact
    cannot be loaded the n-gram ranking is used and ``notes`` says so). Raises
    :class:`FixArgumentError` (a ValueError) on unusable arguments.
    """
    _check_args(source, k, filename, target_version, rerank)
    result = _fix(source, k, filename, target_version, rerank)
    record_fix(result.kind, result.seconds)
    return result


def _fix(source: str, k: int, filename: str, target_version: tuple[int, int] | None,
         rerank: bool | None = None, steps: StepScorer | None = None) -> FixResult:
    t0 = time.perf_counter()
    checker = Checker(filename, target_version)
    err = checker.file_error(source)
    if err is None:
        return FixResult(source, False, True, None, kind="valid", seconds=time.perf_counter() - t0)
    scorer = default_scorer()
    scorer.reset()
    search = _Search(source, k, checker, scorer, t0 + TIME_BUDGET, steps)
    notes: list[str] = [scorer.note] if scorer.note else []
    search.note_stage(err)
    pool = search.run(err)
    if steps is None and rerank is not False and not _confident(pool):
        from noodle.fixer import rerank as rerank_module

        if rerank or rerank_module.enabled():
            t1 = time.perf_counter()
            steps = rerank_module.default_reranker()    # loads once per process: not the search's time
            # the rounds already run are reused; a budget spent on them still leaves one round's time
            deadline = max(search.deadline + (time.perf_counter() - t1), time.perf_counter() + ROUND_BUDGET)
            again = _Search(source, k, checker, scorer, deadline, steps, search.memo)
            pool = again.run(err)
            again.rounds += search.rounds
            again.checks += search.checks
            search = again
    note = getattr(steps, "note", "")
    if note:
        notes.append(note)
    if not pool:
        notes.append(f"no repair compiled within {search.rounds} rounds and {search.checks} parse checks")
        return FixResult(source, False, False, err.info(), kind="unfixed", seconds=time.perf_counter() - t0,
                         notes=tuple(notes))
    cands = _candidates(search, pool, k)
    if not cands:
        return FixResult(source, False, False, err.info(), kind="unfixed",
                         seconds=time.perf_counter() - t0, notes=tuple(notes))
    best = cands[0]
    kind = "simple" if len(best.edits) == 1 else "complex"
    return FixResult(best.source, True, True, err.info(), best.edits, tuple(cands), kind,
                     time.perf_counter() - t0, tuple(notes))


def repair_expression(text: str, k: int = 3) -> list[str]:
    """Up to ``k`` repairs of a broken expression (an f-string field's), best first: the search
    run on ``(text)``, each result that is still one parenthesized expression, unwrapped.

    Why the same search: an expression inside an f-string breaks the way code does (a lost
    comma, a misspelt keyword), and is one STRING token to the outer search."""
    return list(_repair_expression(text, k, default_scorer()))


@functools.lru_cache(maxsize=256)
def _repair_expression(text: str, k: int, scorer: Scorer) -> tuple[str, ...]:
    # cached per scorer (the model it ranks with): the outer search proposes the same field's
    # repairs in each of its rounds
    result = _fix("(" + text + ")\n", k, "<f-string>", None, rerank=False)
    out: list[str] = []
    for c in result.candidates:
        fixed = c.source.rstrip("\n")
        if not (fixed.startswith("(") and fixed.endswith(")")):
            continue
        inner = fixed[1:-1].strip()
        if not inner or inner == text or "#" in inner or inner in out:
            continue             # (a comment would swallow the field's closing brace)
        if parses_as_expression(inner):
            out.append(inner)
    return tuple(out)


def _candidates(search: _Search, pool: list[_Node], k: int) -> list[Candidate]:
    """The complete repairs as candidates, best first (each whole text compiled once more by
    the caller's checker; cached, so this costs nothing for the ones the search checked)."""
    pool.sort(key=lambda n: -n.score)
    out: list[Candidate] = []
    seen: set[str] = set()
    same: set[tuple] = set()
    rows = sorted({line for node in pool for line, _ in node.changed})
    source = "".join(search.base)
    for node in pool:
        if len(out) >= k:
            break
        text = "".join(_lines_of(search.base, node))
        if text in seen or text == source:
            continue
        seen.add(text)
        sig = _signature(search.base, node, rows)
        if sig in same:
            continue                  # the same tokens as a better repair, laid out otherwise
        same.add(sig)
        if search.checker.file_error(text) is not None:
            continue
        out.append(Candidate(text, _edits(search.base, node), round(node.score, 4)))
    return out


def _signature(base: list[str], node: _Node, rows: list[int]) -> tuple[tuple[str, str], ...]:
    """The tokens of the lines any repair changed, as this one leaves them, blind to blanks inside
    a line: two repairs with the same signature are one program (a doubled ')' removed from one
    line or the next), and the second would only take a candidate's place from a different one."""
    changed = dict(node.changed)
    text = "".join(changed.get(r, base[r - 1]) for r in rows)
    toks = lex(text if text.endswith("\n") else text + "\n")
    return tuple((t.kind, t.text) for t in toks if t.kind not in ("NL", "COMMENT", "NEWLINE"))


_PIECES = re.compile(r"[ \t]+|\w+|\*\*=|//=|>>=|<<=|\.\.\.|!=|==|<=|>=|->|:=|\*\*|//|<<|>>|[-+*/%&|^@]=|\r?\n|.")


def _edits(base: list[str], node: _Node) -> tuple[Edit, ...]:
    """The edits from the input to the node's text, token by token on each changed line."""
    out: list[Edit] = []
    for line, new in node.changed:
        old = base[line - 1]
        ow = old[:len(old) - len(old.lstrip(" \t"))]
        nw = new[:len(new) - len(new.lstrip(" \t"))]
        if ow != nw:
            out.append(Edit(line, 0, ow, nw))
        a = _PIECES.findall(old[len(ow):])
        b = _PIECES.findall(new[len(nw):])
        head = 0                    # the common ends first: a diff of a 28,000-character line's
        while head < min(len(a), len(b)) and a[head] == b[head]:      # pieces takes seconds
            head += 1
        tail = 0
        while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
            tail += 1
        col = len(ow) + sum(len(piece) for piece in a[:head])
        a, b = a[head:len(a) - tail], b[head:len(b) - tail]
        cols = [col]
        for piece in a:
            cols.append(cols[-1] + len(piece))
        sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag == "equal":
                continue
            out.append(Edit(line, cols[i1], "".join(a[i1:i2]), "".join(b[j1:j2])))
    return tuple(out)
