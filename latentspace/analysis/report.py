"""One self-contained HTML page about a space: projection, diagnostics, comparison."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import numpy as np

from .compare import compare
from .diagnostics import diagnose
from .projection import Projection, as_projection, project_records, to_figure
from .vectors import collection_records, paired_vectors, stack

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem} table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.4rem .6rem;text-align:left;vertical-align:top}
.concern{color:#b00020;font-weight:600} .ok{color:#1b7f3b} .note{color:#666;font-size:.9rem}
code{background:#f4f4f4;padding:0 .2rem}
"""


def _is_collection(x: Any) -> bool:
    return hasattr(x, "get") and hasattr(x, "spec") and hasattr(x, "name")




def report_html(
    x: Any,
    path: str | Path,
    *,
    other: Any = None,
    method: str = "pca",
    color_by: str | None = None,
    max_points: int = 5000,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Write the report for ``x`` (a Collection or an (n, d) array), optionally compared with ``other``.

    ``other`` must hold the same items in the same order (same ids for collections).
    """
    if _is_collection(x):  # fetched once, for the diagnostics and the picture alike
        recs, total = collection_records(x, max_points, seed)
        arr = stack(recs, x.spec.dim)
        kind = f"collection {x.name}"
        spec_text = f"{x.spec.describe()}, metric {x.spec.metric}, fingerprint {x.spec.fingerprint}"
        diag = diagnose(arr, sample=None, seed=seed, normalized=x.spec.normalize, total=total)
        proj: Projection = project_records(recs, total, method, color_by=color_by, seed=seed)
    else:
        arr = np.asarray(x)
        kind, spec_text = "array", f"{arr.shape[0]:,} x {arr.shape[1] if arr.ndim == 2 else '?'}"
        diag = diagnose(arr, sample=max_points, seed=seed)
        proj = as_projection(arr, method, max_points=max_points, seed=seed)
    fig = to_figure(proj)
    plot = fig.to_html(full_html=False, include_plotlyjs=True, div_id="projection")
    rows = []
    for name, text, concern in diag.findings():
        flag = '<span class="concern">concern</span>' if concern else '<span class="ok">fine</span>'
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{flag}</td><td>{html.escape(text)}</td></tr>")
    comparison = ""
    if other is not None:
        if _is_collection(x) and _is_collection(other):
            a, b = paired_vectors(x, other, max_points, seed)
            other_name = f"collection {other.name}"
        else:
            a, b = arr, np.asarray(other)
            other_name = "the second array"
        cmp = compare(a, b, seed=seed)
        crow = "".join(f"<tr><td>{html.escape(k)}</td><td>{v if isinstance(v, (int, bool)) else f'{v:.4f}'}</td></tr>"
                       for k, v in cmp.items())
        comparison = (f"<h2>Compared with {html.escape(other_name)}</h2><p class='note'>CKA 1 = the same geometry up "
                      "to rotation and scale; kNN overlap = share of neighbours the two spaces agree on.</p>"
                      f"<table>{crow}</table>")
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in diag.notes + proj.notes)
    heading = html.escape(title or f"Space report: {kind}")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{heading}</title><style>{CSS}</style></head>
<body>
<h1>{heading}</h1>
<p>{html.escape(spec_text)} &middot; {diag.n_points:,} points, {diag.dim} dimensions &middot; generated
{time.strftime('%Y-%m-%d %H:%M')} by latentspace</p>
{notes}
<h2>Projection ({html.escape(proj.method.upper())})</h2>
{plot}
<h2>Diagnostics</h2>
<table><tr><th>measure</th><th></th><th>what it says</th></tr>{''.join(rows)}</table>
{comparison}
</body></html>
"""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
