"""Fixes show up where a user looks: `noodle run`'s report (latency percentiles by kind) and /api/summary."""

from __future__ import annotations

import io

from rich.console import Console

from noodle import metrics
from noodle.fixer import batch
from noodle.monitor import summary
from noodle.report import render_report


def test_fixes_reach_the_report_and_the_summary(tmp_path):
    reg = metrics.registry
    batch.publish()
    before = summary.capture(reg)
    for i, source in enumerate((b"x = 1\n", b"def f(x)\n    return x\n", b"print('a'\n")):
        (tmp_path / f"f{i}.py").write_bytes(source)
    refs, problems = batch.discover([tmp_path])
    assert not problems
    outcomes = list(batch.run(refs, workers=1, cache=None, progress=False))
    assert len(outcomes) == 3
    batch.publish()
    hist = reg.get("noodle_fixer_seconds")
    kinds = {key[0]: child.count for key, child in hist.children()}
    assert kinds.get("valid", 0) >= 1 and sum(kinds.values()) >= 3
    text_out = io.StringIO()
    render_report(console=Console(file=text_out, width=140))
    text = text_out.getvalue()
    assert "Syntax fixer" in text and "syntax fixes by kind" in text and "valid" in text
    fixer = summary._diff(summary.capture(reg), before)["fixer"]
    assert fixer["valid"]["count"] >= 1 and fixer["valid"]["p50"] is not None
    assert "noodle_fixer_seconds" in reg.prometheus_text()


def test_direct_fixes_count_once_and_batch_runs_count_one_per_file(tmp_path):
    """A program calling noodle.fixer.fix (e.g. under `noodle run`) is counted; a batch run counts each
    file once even though its fixes go through fix() (no double counting)."""
    from noodle.fixer import fix, telemetry

    reg = metrics.registry
    telemetry.publish()

    def total() -> float:
        counter = reg.get("noodle_fixer_fixes_total")
        return sum(child.value for _, child in counter.children()) if counter is not None else 0.0

    before = total()
    fix("def f(x)\n    return x\n")
    fix("x = 1\n")
    telemetry.publish()
    assert total() - before == 2
    for i, source in enumerate((b"y = (1,\n", b"z = 2\n", b"if x\n    pass\n")):
        (tmp_path / f"g{i}.py").write_bytes(source)
    refs, _ = batch.discover([tmp_path])
    list(batch.run(refs, workers=1, cache=None, progress=False))
    telemetry.publish()
    assert total() - before == 5
