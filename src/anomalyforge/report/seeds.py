"""The report of a benchmark over several seeds: `summary.html` (self-contained) beside
`summary.json`, with the spread of every figure, the paired differences to the baseline, a plot of
the per-seed values and links to each seed's own report."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from jinja2 import Environment, select_autoescape
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from anomalyforge.atomic import write_bytes_atomic
from anomalyforge.errors import DataError

LABELS = {"pixel_auroc": "pixel AUROC", "pixel_ap": "pixel AP", "pixel_f1_max": "pixel F1-max",
          "pixel_aupro": "AUPRO", "image_auroc": "image AUROC", "image_ap": "image AP", "accuracy": "type accuracy",
          "is": "IS", "ic_lpips": "IC-LPIPS"}
PLOTTED = ("pixel_auroc", "pixel_ap", "pixel_aupro", "accuracy")

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ s.category }}: benchmark over {{ s.seeds|length }} seeds</title>
<style>
 body { font: 14px/1.45 system-ui, sans-serif; color: #1d2330; max-width: 1200px; margin: 20px auto; padding: 0 24px; }
 table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 8px 0 14px; }
 th, td { border: 1px solid #d9dde4; padding: 4px 9px; text-align: right; }
 th { background: #f4f6f9; } td.l, th.l { text-align: left; }
 .small { color: #5d6675; font-size: 12px; } img { max-width: 100%; } .pos { color: #1a7f37; } .neg { color: #b42318; }
</style></head><body>
<h1>{{ s.category }}: benchmark over seeds {{ s.seeds|join(", ") }}</h1>
<p class="small">anomalyforge {{ s.version }} · profile {{ s.profile }} · {{ s.created }} · data {{ s.data }}</p>
<p>The same benchmark, run once per seed (generation, training draws and every other random choice
follow the seed); the test split is the same for every seed and is read once per run. Each cell is
the mean ± standard deviation over the seeds, with the smallest and largest value below (in %).</p>
<table><thead><tr><th class="l">method</th><th class="l">model</th>
{% for k in keys %}<th>{{ labels[k] }}</th>{% endfor %}</tr></thead><tbody>
{% for m in s.methods %}<tr><td class="l">{{ m }}</td><td class="l">{{ s.models[m] }}</td>
{% for k in keys %}<td>{{ cells[m][k]|safe }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table>
{% if s.paired %}
<h2>Paired differences to {{ s.baseline }}</h2>
<p>Per seed, method minus {{ s.baseline }} on the same test split: mean [smallest, largest], and on
how many seeds the method was ahead.</p>
<table><thead><tr><th class="l">method</th>
{% for k in paired_keys %}<th>{{ labels[k] }}</th>{% endfor %}</tr></thead><tbody>
{% for m, row in paired %}<tr><td class="l">{{ m }}</td>
{% for c in row %}<td>{{ c|safe }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table>
{% endif %}
<img src="{{ plot }}" alt="per-seed values of each method">
<h2>Each seed's report</h2>
<ul>{% for seed in s.seeds %}<li><a href="seed-{{ seed }}/report.html">seed {{ seed }}</a></li>{% endfor %}</ul>
</body></html>
"""


def _pct(v: float, signed: bool = False) -> str:
    return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"


def _cell(st: dict | None, key: str) -> str:
    if st is None:
        return "—"
    if key == "is":
        return f"{st['mean']:.2f} ± {st['sd']:.2f}<br><span class='small'>{st['min']:.2f}–{st['max']:.2f}</span>"
    if key == "ic_lpips":
        return f"{st['mean']:.3f} ± {st['sd']:.3f}<br><span class='small'>{st['min']:.3f}–{st['max']:.3f}</span>"
    return (f"{_pct(st['mean'])} ± {_pct(st['sd'])}<br>"
            f"<span class='small'>{_pct(st['min'])}–{_pct(st['max'])}</span>")


def _paired_cell(st: dict | None) -> str:
    if st is None:
        return "—"
    cls = "pos" if st["mean"] > 0 else "neg" if st["mean"] < 0 else ""
    return (f"<span class='{cls}'>{_pct(st['mean'], True)}</span> [{_pct(st['min'], True)}, "
            f"{_pct(st['max'], True)}]<br><span class='small'>ahead {st['ahead']}/{st['n']}</span>")


def seeds_figure(summary: dict) -> Figure:
    """Per-seed values (dots) and their mean (line) of each method, one panel per figure."""
    keys = [k for k in PLOTTED if any(summary["figures"][m][k] for m in summary["methods"])]
    fig = Figure(figsize=(3.2 * max(1, len(keys)), 3.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(1, len(keys)), squeeze=False)[0]
    methods = summary["methods"]
    for ax, k in zip(axes, keys, strict=False):
        for i, m in enumerate(methods):
            st = summary["figures"][m][k]
            if st is None:
                continue
            vals = [100 * v for v in st["values"] if v is not None]
            ax.hlines(100 * st["mean"], i - 0.3, i + 0.3, color="#1d2330", lw=2)
            ax.scatter([i] * len(vals), vals, color="#1f4e9c", s=16, alpha=0.8, zorder=3)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        lo = min(100 * summary["figures"][m][k]["min"] for m in methods if summary["figures"][m][k])
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_ylim(max(0.0, lo - 5), 100)
        ax.set_title(f"{LABELS[k]} (%)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{summary.get('category')}: each dot one seed, the line their mean", fontsize=10)
    fig.tight_layout()
    return fig


def write_seeds_report(out: Path) -> Path:
    """Write the self-contained `summary.html` (and `summary.png`) from `<out>/summary.json`."""
    out = Path(out)
    try:
        s = json.loads((out / "summary.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(out / "summary.json", f"cannot read the summary over seeds ({exc})") from None
    keys = [k for k in LABELS if any(s["figures"][m].get(k) for m in s["methods"])]
    cells = {m: {k: _cell(s["figures"][m].get(k), k) for k in keys} for m in s["methods"]}
    paired_keys = [k for k in keys if k not in ("is", "ic_lpips") and any(k in v for v in s.get("paired", {}).values())]
    paired = [(m, [_paired_cell(v.get(k)) for k in paired_keys]) for m, v in s.get("paired", {}).items()]
    buf = io.BytesIO()
    seeds_figure(s).savefig(buf, format="png", dpi=110)
    write_bytes_atomic(out / "summary.png", buf.getvalue())
    plot = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    html = env.from_string(_PAGE).render(s=s, keys=keys, labels=LABELS, cells=cells, paired=paired,
                                         paired_keys=paired_keys, plot=plot)
    write_bytes_atomic(out / "summary.html", html.encode("utf-8"))
    return out / "summary.html"
