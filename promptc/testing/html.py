"""`promptc compare --format html`: one self-contained HTML file (no scripts, no external assets) with the
comparison table, the paired tests, each dataset's confusion matrix per subject, and an inline SVG plot
of pass rate against cost per request. Rendered with jinja2 (autoescaped), which promptc already uses."""

from __future__ import annotations

from typing import Any

from promptc.testing.table import rate, summary_rows

W, H, PAD = 560, 320, 56

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>promptc compare: {{ data.program }} / {{ data.task }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; }
td.fail { color: #b00020; font-weight: 600; }
td.diag { background: #e8f4e8; }
.verdict { font-weight: 600; }
figure { margin: 1em 0; }
</style>
</head>
<body>
<h1>promptc compare: task {{ data.task }} of {{ data.program }}</h1>

<h2>Subjects</h2>
<table id="comparison">
<thead><tr><th>test</th>{% for s in subs %}<th>{{ s.label }}</th>{% endfor %}</tr></thead>
<tbody>
{% for name in tests %}<tr><td>{{ name }}</td>{% for s in subs %}{% set t = s.tests.get(name) %}
{% if t is none or t.status == "skipped" %}<td>-</td>{% else %}<td class="{{ 'fail' if t.status == 'failed' else '' }}">{{ "%.0f%%"|format(t.pass_rate * 100) }}{{ " FAIL" if t.status == "failed" else "" }}</td>{% endif %}{% endfor %}</tr>
{% endfor %}
{% for label, cells in summary %}<tr><th>{{ label }}</th>{% for c in cells %}<td>{{ c }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table>

<h2>Pass rate against cost</h2>
<figure>
{{ plot|safe }}
<figcaption>Each point is a subject: the share of cases that passed, against {{ x_label }}.</figcaption>
</figure>

{% if data.pairs %}
<h2>Paired comparison</h2>
<p>On the cases both subjects ran: exact McNemar test on per-case pass/fail, and a 95% bootstrap interval of the
difference in pass rate.</p>
<table id="pairs">
<thead><tr><th>pair</th><th>n</th><th>only A passed</th><th>only B passed</th><th>difference (95% CI)</th><th>p</th><th>verdict</th></tr></thead>
<tbody>
{% for p in data.pairs %}<tr><td>{{ p.a }} vs {{ p.b }}</td><td>{{ p.n }}</td><td>{{ p.only_a }}</td><td>{{ p.only_b }}</td>
<td>{{ "%+.1f%%"|format(p.diff * 100) }} [{{ "%+.1f%%"|format(p.diff_ci95[0] * 100) }}, {{ "%+.1f%%"|format(p.diff_ci95[1] * 100) }}]</td>
<td>{{ "%.3g"|format(p.mcnemar_p) }}</td><td class="verdict">{{ p.verdict }}</td></tr>
{% endfor %}
</tbody>
</table>
{% endif %}

{% for m in matrices %}
<h3>Confusion matrix: {{ m.dataset }}{% if m.field %} ({{ m.field }}){% endif %} on {{ m.label }}</h3>
<p>accuracy {{ m.accuracy }}; macro F1 {{ "%.3f"|format(m.macro_f1) }}</p>
<table class="confusion">
<thead><tr><th>expected \\ predicted</th>{% for l in m.labels %}<th>{{ l }}</th>{% endfor %}<th>recall</th></tr></thead>
<tbody>
{% for row in m.rows %}<tr><th>{{ row.label }}</th>{% for c in row.cells %}<td class="{{ 'diag' if loop.index0 == row.index else '' }}">{{ c }}</td>{% endfor %}<td>{{ row.recall }}</td></tr>
{% endfor %}
</tbody>
</table>
{% endfor %}
<p><small>promptc compare, format version {{ data.promptc_compare }}.</small></p>
</body>
</html>
"""


def _matrices(subs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in subs:
        for ds, m in s["metrics"].items():
            found = [(None, m["classification"])] if "classification" in m else []
            found += list((m.get("field_classification") or {}).items())
            for fld, c in found:
                labels, matrix = c["confusion"]["labels"], c["confusion"]["matrix"]
                recall = {x["label"]: x["recall"] for x in c["per_label"]}
                rows = [{"label": lab, "index": i, "cells": matrix[i],
                         "recall": rate(recall.get(lab)) if lab in recall else "-"}
                        for i, lab in enumerate(labels) if sum(matrix[i]) or lab in recall]
                out.append({"label": s["label"], "dataset": ds, "field": fld, "labels": labels, "rows": rows,
                            "accuracy": rate(c["accuracy"]), "macro_f1": c["macro_f1"]})
    return out


def plot(subs: list[dict[str, Any]]) -> tuple[str, str]:
    """An SVG scatter of case pass rate (y) against cost per request (x): USD when every subject is
    priced, else prompt tokens per request."""
    from markupsafe import escape

    priced = all(s["cost"]["usd_per_request"] is not None for s in subs)
    xs = [s["cost"]["usd_per_request"] if priced else s["cost"]["prompt_tokens_per_request"] for s in subs]
    x_label = "USD per request" if priced else "prompt tokens per request (no price table)"
    ys = [s["cases"]["rate"] for s in subs]
    hi = max(xs) if xs and max(xs) > 0 else 1.0
    sx = lambda x: PAD + (W - 2 * PAD) * (x / (hi * 1.1))  # noqa: E731
    sy = lambda y: H - PAD - (H - 2 * PAD) * y  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
             f'role="img" aria-label="pass rate against cost">',
             f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#444"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#444"/>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = sy(tick)
        parts.append(f'<line x1="{PAD - 4}" y1="{y:.1f}" x2="{W - PAD}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{PAD - 8}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{tick:.0%}</text>')
    for frac in (0.0, 0.5, 1.0):
        x = sx(hi * frac)
        v = hi * frac
        txt = f"{v:.2g}" if priced else f"{v:.0f}"
        parts.append(f'<text x="{x:.1f}" y="{H - PAD + 16}" font-size="11" text-anchor="middle">{txt}</text>')
    parts.append(f'<text x="{W / 2:.0f}" y="{H - 12}" font-size="12" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{H / 2:.0f}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {H / 2:.0f})">cases passed</text>')
    for s, x, y in zip(subs, xs, ys):
        cx, cy = sx(x), sy(y)
        lo, up = s["cases"]["ci95"]
        parts.append(f'<line class="ci" x1="{cx:.1f}" y1="{sy(lo):.1f}" x2="{cx:.1f}" y2="{sy(up):.1f}" '
                     f'stroke="#888"/>')
        parts.append(f'<circle class="subject" cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="#1f77b4">'
                     f'<title>{escape(s["label"])}: {y:.1%}</title></circle>')
        parts.append(f'<text x="{cx + 8:.1f}" y="{cy - 6:.1f}" font-size="11">{escape(s["label"])}</text>')
    parts.append("</svg>")
    return "\n".join(parts), x_label


def to_html(data: dict[str, Any]) -> str:
    import jinja2

    subs = data["subjects"]
    tests: list[str] = []
    for s in subs:
        for name in s["tests"]:
            if name not in tests:
                tests.append(name)
    svg, x_label = plot(subs)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(data=data, subs=subs, tests=tests, summary=summary_rows(subs),
                                            matrices=_matrices(subs), plot=svg, x_label=x_label)
