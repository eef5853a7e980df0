"""Canary charts as inline SVG, drawn server-side with pygal (no JavaScript build chain, no
script on the page: pygal's tooltip script is switched off with ``js=[]`` and the config block it
always embeds, a ``<script>`` holding the chart's labels as JSON, is removed).

One chart per analysed check: the check's measured value per measurement, its threshold as a
dashed line, and the canary's traffic percent on the secondary axis, so each step's decision
can be read against both. pygal was chosen over hand-drawn SVG because it is a maintained
library that escapes its text and lays out axes and legends; it is imported lazily (only the
dashboard draws charts).
"""

from __future__ import annotations

import re
from functools import lru_cache

from mlgate.core.dashboard import CanaryView, ChartSeries


_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.S | re.I)


def _style():  # type: ignore[no-untyped-def]
    from pygal.style import Style

    return Style(background="white", plot_background="white", font_family="system-ui, sans-serif",
                 colors=("#1f6feb", "#cf222e", "#8250df", "#1a7f37", "#9a6700"), opacity=".9",
                 title_font_size=15, legend_font_size=12, label_font_size=11, major_label_font_size=11,
                 value_font_size=11, tooltip_font_size=11)


def check_chart(canary: CanaryView, check: ChartSeries, width: int = 640, height: int = 280) -> str:
    """The SVG document (a string, no XML declaration) of one check of ``canary``.

    Args:
        canary: from :func:`mlgate.core.dashboard.canary_view`.
        check: one of ``canary.series`` other than traffic.
        width, height: pixels.
    """
    import pygal  # lazily: only the dashboard draws

    chart = pygal.Line(width=width, height=height, style=_style(), js=[], disable_xml_declaration=True,
                       show_dots=True, dots_size=3, x_label_rotation=20, legend_at_bottom=True, truncate_legend=-1,
                       title=f"{check.name} ({'at most' if check.bound == 'max' else 'at least'} {check.threshold})"
                       if check.threshold is not None else check.name, include_x_axis=False,
                       print_values=False, allow_interruptions=True, secondary_range=(0, 100),
                       range=_range(check), legend_box_size=10, value_formatter=lambda v: f"{v:.4g}")
    chart.x_labels = list(canary.labels)
    chart.add(check.name, list(check.values))
    if check.threshold is not None:
        chart.add(f"threshold ({check.bound})", [check.threshold] * len(canary.labels),
                  stroke_style={"width": 2, "dasharray": "6, 4"}, show_dots=False)
    traffic = canary.series[0]
    chart.add("traffic %", list(traffic.values), secondary=True, stroke_style={"width": 2}, fill=False)
    # the config <script> pygal always writes is data for its tooltip script, which is not loaded; a
    # label holding "</script>" must never be able to end it early, so it goes
    return _SCRIPT.sub("", chart.render(is_unicode=True))


def _range(check: ChartSeries) -> tuple[float, float]:
    """The y range of a check: from 0 (or below the lowest value) to above both the highest value and
    the threshold, so the threshold line is always in the picture."""
    values = [v for v in check.values if v is not None] + ([check.threshold] if check.threshold is not None else [])
    if not values:
        return (0.0, 1.0)
    low, high = min(0.0, *values), max(values)
    return (low, high * 1.25 if high > 0 else 1.0)


@lru_cache(maxsize=256)
def canary_charts(canary: CanaryView) -> list[tuple[str, str]]:
    """``(check name, SVG)`` for every check of ``canary``; none before its first measurement.

    Cached by value (a :class:`CanaryView` is frozen and hashable): drawing costs about 25 ms a
    chart, and a canary's data changes only when it is measured, so a page drawn again is cheap."""
    if not canary.labels:
        return []
    return [(s.name, check_chart(canary, s)) for s in canary.series[1:]]
