#!/usr/bin/env python3
# Usage: scripts/chart.py perf/results/<stamp> [--out FILE.svg]
#
# Draws the table of one scripts/compare.sh run (its summary.md) as an SVG bar chart: for each
# scenario, how many times better ringnats is than nats-server (throughput A/B, latency and
# memory B/A, so right of 1.0 is better for ringnats). Standard library only; writes
# <stamp>/chart.svg unless --out is given.
import argparse
import html
import os
import re
import sys


def rows(summary_path):
    """(label, advantage) for every row of the summary table that has a B/A ratio."""
    out = []
    with open(summary_path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 5 or not re.match(r"^[0-9.]+$", cells[4]):
                continue
            scenario, metric, ratio = cells[0], cells[1], float(cells[4])
            if ratio <= 0:
                continue
            higher_better = "higher better" in metric
            # B/A is nats-server over ringnats: for throughput ringnats' advantage is A/B.
            advantage = 1.0 / ratio if higher_better else ratio
            short = metric.split("(")[0].strip()
            out.append((f"{scenario} · {short}", advantage))
    return out


def svg(data, title):
    width, bar_h, gap, left, right = 900, 18, 6, 330, 60
    height = 60 + len(data) * (bar_h + gap) + 30
    top = max(max(a for _, a in data), 1.0) * 1.1
    scale = (width - left - right) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="10" y="22" font-size="15">{html.escape(title)}</text>',
        '<text x="10" y="40" fill="#555">ringnats advantage over nats-server 2.9.10 '
        "(×; right of the line = ringnats better)</text>",
    ]
    y = 55
    for label, adv in data:
        w = adv * scale
        color = "#2a7" if adv >= 1.0 else "#c54"
        parts.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{html.escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 13}">{adv:.2f}×</text>')
        y += bar_h + gap
    one = left + scale
    parts.append(f'<line x1="{one:.1f}" y1="50" x2="{one:.1f}" y2="{y}" stroke="#000" stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{one:.1f}" y="{y + 16}" text-anchor="middle">1.0</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("result_dir")
    ap.add_argument("--out")
    args = ap.parse_args()
    summary = os.path.join(args.result_dir, "summary.md")
    if not os.path.exists(summary):
        sys.exit(f"chart.py: no summary.md in {args.result_dir}")
    data = rows(summary)
    if not data:
        sys.exit("chart.py: no ratio rows in summary.md")
    out = args.out or os.path.join(args.result_dir, "chart.svg")
    with open(out, "w") as f:
        f.write(svg(data, f"scripts/compare.sh — {os.path.basename(os.path.normpath(args.result_dir))}"))
    print(out)


if __name__ == "__main__":
    main()
