"""Benchmark figure: request shaping over time, as an SVG written by hand (no plotting
library in the dependencies).

One column per workload, three panels each: throughput (records committed per second),
mean documents per bulk request, and the in-flight limit with the requests in flight, one
line per concurrency mode, from the timelines `bench/indexer_proc.py` records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

COLORS = {"fixed": "#1f77b4", "adaptive": "#d62728"}
PANEL_W, PANEL_H, MARGIN_L, MARGIN_T, GAP = 360, 150, 60, 40, 45
PANELS = (
    ("records committed / s", "rate"),
    ("documents per request", "bulk"),
    ("in-flight limit (solid), in flight (dotted)", "limit"),
)


def series(timeline: Sequence[Mapping[str, float]], kind: str) -> list[tuple[float, float]]:
    """(t, value) points of one panel from a run's timeline."""
    points: list[tuple[float, float]] = []
    for before, after in pairwise(timeline):
        dt = after["t"] - before["t"]
        if dt <= 0:
            continue
        if kind == "rate":
            points.append((after["t"], (after["committed"] - before["committed"]) / dt))
        elif kind == "bulk":
            requests = after["requests"] - before["requests"]
            if requests > 0:
                points.append((after["t"], (after["documents"] - before["documents"]) / requests))
        elif kind == "limit":
            points.append((after["t"], after["limit"]))
        elif kind == "in_flight":
            points.append((after["t"], after["in_flight"]))
    return points


def _polyline(
    points: Sequence[tuple[float, float]],
    x0: float,
    y0: float,
    t_max: float,
    v_max: float,
    color: str,
    dash: str = "",
) -> str:
    if not points:
        return ""
    coords = " ".join(
        f"{x0 + PANEL_W * t / t_max:.1f},{y0 + PANEL_H - PANEL_H * v / v_max:.1f}"
        for t, v in points
    )
    extra = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.5"{extra} points="{coords}"/>'


def write_svg(path: Path, workloads: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
    """`workloads`: name -> mode -> run result (with its "timeline")."""
    columns = list(workloads)
    width = MARGIN_L + len(columns) * (PANEL_W + MARGIN_L) + 20
    height = MARGIN_T + len(PANELS) * (PANEL_H + GAP) + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    legend_x = MARGIN_L
    for mode, color in COLORS.items():
        out.append(
            f'<line x1="{legend_x}" y1="14" x2="{legend_x + 20}" y2="14" stroke="{color}" '
            'stroke-width="2"/>'
        )
        out.append(f'<text x="{legend_x + 24}" y="18">{mode}</text>')
        legend_x += 90
    for c, name in enumerate(columns):
        runs = workloads[name]
        x0 = MARGIN_L + c * (PANEL_W + MARGIN_L)
        t_max = max((p["t"] for r in runs.values() for p in r.get("timeline", [])), default=1.0)
        for row, (title, kind) in enumerate(PANELS):
            y0 = MARGIN_T + row * (PANEL_H + GAP)
            lines = {mode: series(run.get("timeline", []), kind) for mode, run in runs.items()}
            dotted = (
                {mode: series(run.get("timeline", []), "in_flight") for mode, run in runs.items()}
                if kind == "limit"
                else {}
            )
            values = [v for pts in (*lines.values(), *dotted.values()) for _, v in pts]
            v_max = max(values, default=1.0) * 1.1 or 1.0
            out.append(
                f'<rect x="{x0}" y="{y0}" width="{PANEL_W}" height="{PANEL_H}" fill="none" '
                'stroke="#999"/>'
            )
            out.append(f'<text x="{x0}" y="{y0 - 6}">{name}: {title}</text>')
            out.append(f'<text x="{x0 - 4}" y="{y0 + 10}" text-anchor="end">{v_max:,.0f}</text>')
            out.append(f'<text x="{x0 - 4}" y="{y0 + PANEL_H}" text-anchor="end">0</text>')
            out.append(
                f'<text x="{x0 + PANEL_W}" y="{y0 + PANEL_H + 12}" text-anchor="end">'
                f"{t_max:.0f} s</text>"
            )
            for mode, pts in lines.items():
                out.append(_polyline(pts, x0, y0, t_max, v_max, COLORS.get(mode, "black")))
            for mode, pts in dotted.items():
                out.append(_polyline(pts, x0, y0, t_max, v_max, COLORS.get(mode, "black"), "2,3"))
    out.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
