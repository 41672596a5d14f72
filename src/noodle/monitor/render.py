"""Renderers of a :class:`~noodle.monitor.profiler.ProfileSession`: speedscope JSON and an HTML flame graph.

Why our own renderers: the capture is our own sampler, and both outputs are
small: speedscope's "sampled" profile is a frame table plus stacks and weights,
and the flame graph is static SVG in one self-contained HTML file (no script
from a CDN, so it opens offline and can be attached to a bug report).
"""

from __future__ import annotations

import html
import os
from typing import Any

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def to_speedscope(session: Any) -> dict[str, Any]:
    """The session as a speedscope file with one "sampled" profile (unit: seconds)."""
    total = session.total_seconds()
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "exporter": "noodle",
        "name": session.name,
        "activeProfileIndex": 0,
        "shared": {"frames": [{"name": f["name"], "file": f["file"], "line": f["line"]}
                              for f in session.frames]},
        "profiles": [{
            "type": "sampled",
            "name": session.name,
            "unit": "seconds",
            "startValue": 0,
            "endValue": total,
            "samples": [list(row["frames"]) for row in session.stacks],
            "weights": [row["weight"] for row in session.stacks],
        }],
    }


class _Node:
    __slots__ = ("fid", "value", "children")

    def __init__(self, fid: int) -> None:
        self.fid = fid
        self.value = 0.0
        self.children: dict[int, _Node] = {}


def _tree(session: Any) -> _Node:
    root = _Node(-1)
    for row in session.stacks:
        node = root
        node.value += row["weight"]
        for fid in row["frames"]:
            child = node.children.get(fid)
            if child is None:
                child = node.children[fid] = _Node(fid)
            child.value += row["weight"]
            node = child
    return root


_COLOURS = ("#e8743b", "#f2a541", "#f3c178", "#d95d39", "#ee964b", "#f4d35e", "#e76f51", "#f4a261")


def _flame_svg(session: Any, width: int = 1200, row: int = 18, min_px: float = 0.5) -> tuple[str, int]:
    root = _tree(session)
    total = root.value or 1.0
    rects: list[str] = []
    depth_max = 0

    def walk(node: _Node, x: float, depth: int) -> None:
        nonlocal depth_max
        for child in sorted(node.children.values(), key=lambda c: -c.value):
            w = child.value / total * width
            if w >= min_px:
                depth_max = max(depth_max, depth)
                f = session.frames[child.fid]
                label = f"{f['name']} ({os.path.basename(f['file'])}:{f['line']})"
                tip = html.escape(f"{label}: {child.value * 1e3:.1f} ms, {child.value / total:.1%}")
                colour = _COLOURS[hash(f["name"]) % len(_COLOURS)]
                y = depth * row
                text = html.escape(label) if w > 40 else ""
                rects.append(
                    f'<g class="frame"><title>{tip}</title>'
                    f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{row - 1}" fill="{colour}"/>'
                    + (f'<text x="{x + 3:.2f}" y="{y + row - 5}" textLength="{max(w - 6, 1):.0f}" '
                       f'lengthAdjust="spacingAndGlyphs">{text[: int(w / 6.5)]}</text>' if text else "")
                    + "</g>")
                walk(child, x, depth + 1)
            x += w

    walk(root, 0.0, 0)
    height = (depth_max + 1) * row
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">' + "".join(rects) + "</svg>")
    return svg, len(rects)


def to_html(session: Any) -> str:
    """A self-contained HTML page: flame graph (root at the top), top functions, memory and GPU tables."""
    svg, n = _flame_svg(session)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{s * 1e3:.1f}</td><td>{t * 1e3:.1f}</td></tr>"
        for name, s, t in session.top_functions(25))
    mem = ""
    if session.memory:
        m = session.memory
        mem_rows = "".join(
            f"<tr><td>{html.escape(os.path.basename(a['file']))}:{a['line']}</td><td>{a['size'] / 1024:.1f}</td>"
            f"<td>{a['count']}</td></tr>" for a in m["top"])
        mem = (f"<h2>Memory (tracemalloc)</h2><p>peak {m['peak_bytes'] / 1e6:.2f} MB, "
               f"still allocated at the end {m['current_bytes'] / 1e6:.2f} MB</p>"
               f"<table><tr><th>site</th><th>KiB</th><th>blocks</th></tr>{mem_rows}</table>")
    gpu = ""
    if session.gpu:
        gpu_rows = "".join(f"<tr><td>{html.escape(g['name'])}</td><td>{g['ms']:.3f}</td></tr>" for g in session.gpu)
        gpu = f"<h2>GPU ranges (CUDA events)</h2><table><tr><th>range</th><th>ms</th></tr>{gpu_rows}</table>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>noodle profile: {html.escape(session.name)}</title>
<style>body{{font-family:sans-serif;margin:1em}} .frame rect{{stroke:#fff;stroke-width:.5}}
.frame:hover rect{{fill:#5b8def}} table{{border-collapse:collapse}} td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}
td:nth-child(n+2){{text-align:right}}</style></head>
<body><h1>noodle profile: {html.escape(session.name)}</h1>
<p>{session.sample_count} samples every {session.interval * 1e3:.1f} ms over {session.duration:.3f} s
({session.total_seconds():.3f} s sampled). Hover a frame for its time; width is the share of samples.</p>
<div id="flame" data-frames="{n}" style="overflow-x:auto">{svg}</div>
<h2>Top functions by self time</h2>
<table><tr><th>function</th><th>self ms</th><th>total ms</th></tr>{rows}</table>
{mem}{gpu}
</body></html>
"""
