"""Inline SVG charts for the report, drawn here (no JavaScript, no chart library).

Every chart carries a ``<title>`` and ``<desc>`` for screen readers and tells
series apart by line style and text labels, not by colour alone. Text from
evidence is escaped; numbers are formatted here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

_FONT = 'font-family="system-ui, sans-serif" font-size="11"'
MARKER_LABEL_CHARS = 40


@dataclass(frozen=True)
class TimelinePoint:
    """One bucket of a load timeline.

    Attributes:
        t_s: start of the bucket, seconds since the load started.
        requests: calls started in the bucket.
        errors: failed calls among them.
        p50_ms, p99_ms: latency percentiles (None when the bucket is empty).
        markers: phase markers that fall in the bucket (e.g. ``rotation-start``).
    """

    t_s: float
    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    markers: tuple[str, ...] = ()


def nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10 ** exponent
        if candidate >= value:
            return float(candidate)
    return float(10 ** (exponent + 1))


def _num(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


def _polyline(points: list[tuple[float, float]], style: str) -> str:
    if not points:
        return ""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline fill="none" points="{coords}" {style}/>'


def timeline_svg(points: Sequence[TimelinePoint], bucket_s: float, *, title: str = "Load during rotation",
                 ident: str = "timeline") -> Markup:
    """Throughput, latency p50/p99 and errors over time, with the phase markers as vertical lines."""
    width, left, right = 760, 64, 16
    plot_w = width - left - right
    panels = (("Throughput (requests/s)", 84), ("Latency (ms): p50 solid, p99 dashed", 84),
              ("Failed requests per bucket", 60))
    top, gap = 34, 30
    end = max([p.t_s + bucket_s for p in points] + [bucket_s])
    total_h = top + sum(h for _, h in panels) + gap * len(panels) + 20

    def x_of(t: float) -> float:
        return left + plot_w * t / end

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {total_h}" role="img" '
             f'class="chart" aria-labelledby="{ident}-title {ident}-desc" {_FONT}>',
             f'<title id="{ident}-title">{escape(title)}</title>']
    errors = sum(p.errors for p in points)
    markers = [(p.t_s, name) for p in points for name in p.markers]
    desc = (f"{len(points)} buckets of {_num(bucket_s)} s, {sum(p.requests for p in points)} requests, "
            f"{errors} failed; markers: " + (", ".join(f"{n} at {_num(t)} s" for t, n in markers) or "none"))
    parts.append(f'<desc id="{ident}-desc">{escape(desc)}</desc>')
    y0 = top
    rates = [p.requests / bucket_s for p in points]
    latencies = [v for p in points for v in (p.p50_ms, p.p99_ms) if v is not None]
    scales = (nice_max(max(rates, default=0)), nice_max(max(latencies, default=0)),
              nice_max(max((p.errors for p in points), default=0)))
    for index, ((label, height), scale) in enumerate(zip(panels, scales, strict=True)):
        base = y0 + height
        parts.append(f'<text x="{left}" y="{y0 - 8}" font-weight="600">{escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y0}" width="{plot_w}" height="{height}" fill="#fafafa" '
                     f'stroke="#bbb"/>')
        for frac in (0.0, 0.5, 1.0):
            y = base - height * frac
            parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                         f'{_num(scale * frac)}</text>')
            if 0 < frac < 1:
                parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                             f'stroke="#ddd"/>')

        def y_of(value: float, base: float = base, height: int = height, scale: float = scale) -> float:
            return base - height * min(value / scale, 1.0)

        mid = bucket_s / 2
        if index == 0:
            parts.append(_polyline([(x_of(p.t_s + mid), y_of(r)) for p, r in zip(points, rates, strict=True)],
                                   'stroke="#1f4e9c" stroke-width="2"'))
        elif index == 1:
            for attr, style in (("p50_ms", 'stroke="#1f4e9c" stroke-width="2"'),
                                ("p99_ms", 'stroke="#b35900" stroke-width="2" stroke-dasharray="6 4"')):
                # A bucket with no calls has no latency: the line breaks there.
                segment: list[tuple[float, float]] = []
                for p in points:
                    value = getattr(p, attr)
                    if value is None:
                        parts.append(_polyline(segment, style))
                        segment = []
                    else:
                        segment.append((x_of(p.t_s + mid), y_of(value)))
                parts.append(_polyline(segment, style))
        else:
            bar_w = max(plot_w * bucket_s / end - 1, 1)
            for p in points:
                if p.errors:
                    y = y_of(p.errors)
                    parts.append(f'<rect x="{x_of(p.t_s):.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                                 f'height="{base - y:.1f}" fill="#b00020"><title>{p.errors} failed at '
                                 f'{_num(p.t_s)} s</title></rect>')
            if not errors:
                parts.append(f'<text x="{left + plot_w / 2}" y="{base - height / 2 + 4}" '
                             f'text-anchor="middle">no failed requests</text>')
        y0 = base + gap
    bottom = y0 - gap
    tick = nice_max(end / 6)
    for step in range(int(end / tick) + 1):
        t = tick * step
        parts.append(f'<text x="{x_of(t):.1f}" y="{bottom + 14}" text-anchor="middle">{_num(round(t, 1))} s'
                     f'</text>')
    # Markers of one bucket share a line; long names (e.g. a command's output) are cut on the
    # chart and given whole in the line's tooltip and in the table under it.
    by_time: dict[float, list[str]] = {}
    for t, name in markers:
        by_time.setdefault(t, []).append(name)
    for number, (t, names) in enumerate(sorted(by_time.items())):
        x = x_of(t)
        label = "; ".join(sorted(names, key=len))
        short = label if len(label) <= MARKER_LABEL_CHARS else label[:MARKER_LABEL_CHARS - 1] + "…"
        right_half = x > left + plot_w * 0.6
        anchor, dx = ("end", -3) if right_half else ("start", 3)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{bottom}" stroke="#333" '
                     f'stroke-dasharray="2 3"><title>{escape(label)}</title></line>')
        parts.append(f'<text x="{x + dx:.1f}" y="{12 + 11 * (number % 2)}" text-anchor="{anchor}" '
                     f'font-weight="600">▼ {escape(short)}<title>{escape(label)}</title></text>')
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class HistogramBin:
    """One bar of a histogram.

    Attributes:
        label: what the bar counts (e.g. ``cost 10``).
        count: how many.
        flagged: the bar breaks the policy (drawn hatched and labelled, not only coloured).
    """

    label: str
    count: int
    flagged: bool = False


def histogram_svg(bins: Sequence[HistogramBin], *, title: str, note: str = "", ident: str = "histogram"
                  ) -> Markup:
    """Vertical bars with their counts written above them; flagged bars are hatched and marked ✗."""
    width, left, height, top = 760, 48, 150, 24
    slot = (width - left - 16) / max(len(bins), 1)
    scale = nice_max(max((b.count for b in bins), default=0))
    base = top + height
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {base + 48}" role="img" '
             f'class="chart" aria-labelledby="{ident}-title {ident}-desc" {_FONT}>',
             f'<title id="{ident}-title">{escape(title)}</title>',
             f'<desc id="{ident}-desc">' + escape("; ".join(
                 f"{b.label}: {b.count}{' (breaks the policy)' if b.flagged else ''}" for b in bins)
                 + (f". {note}" if note else "")) + "</desc>",
             f'<defs><pattern id="{ident}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
             'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f3c9cf"/>'
             '<line x1="0" y1="0" x2="0" y2="6" stroke="#b00020" stroke-width="3"/></pattern></defs>',
             f'<line x1="{left}" x2="{width - 16}" y1="{base}" y2="{base}" stroke="#333"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{_num(scale)}</text>',
             f'<text x="{left}" y="{top - 10}" font-weight="600">count</text>',
             f'<text x="{left - 6}" y="{base + 4}" text-anchor="end">0</text>']
    bar_w = min(slot * 0.7, 80)
    for index, item in enumerate(bins):
        x = left + slot * index + (slot - bar_w) / 2
        h = height * item.count / scale
        fill = f'fill="url(#{ident}-hatch)" stroke="#b00020"' if item.flagged else 'fill="#1f4e9c"'
        parts.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" {fill}/>')
        mark = " ✗" if item.flagged else ""
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{base - h - 5:.1f}" text-anchor="middle" '
                     f'font-weight="600">{item.count}{mark}</text>')
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{base + 16}" text-anchor="middle">'
                     f'{escape(item.label)}</text>')
    if note:
        parts.append(f'<text x="{left}" y="{base + 38}">{escape(note)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
