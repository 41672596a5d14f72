"""The report ``noodle run`` prints at exit.

Sections are modules named ``section_*.py`` in this package, discovered at
render time. Each defines ``ORDER`` (an int: lower prints first) and
``render(registry) -> rich renderable | None`` reading only the metrics
registry (and its events), so the report never imports the parts it describes.
"""

from noodle.report.render import render_report

__all__ = ["render_report"]
