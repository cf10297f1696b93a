"""The few-shot detection report: `fewshot.html` (self-contained) and `fewshot.png` beside
`fewshot.json`, so the K-shot curves can be read and mailed like the benchmark report."""

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

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ doc.category }}: few-shot detectors</title>
<style>
 body { font: 14px/1.45 system-ui, sans-serif; color: #1d2330; max-width: 1100px; margin: 20px auto; padding: 0 24px; }
 table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 8px 0 14px; }
 th, td { border: 1px solid #d9dde4; padding: 4px 9px; text-align: right; }
 th { background: #f4f6f9; } td.l, th.l { text-align: left; } tr.gen td { background: #eef4ff; }
 .small { color: #5d6675; font-size: 12px; } img { max-width: 100%; }
</style></head><body>
<h1>{{ doc.category }}: few-shot detectors, with and without generated good images</h1>
<p class="small">anomalyforge {{ doc.version }} · profile {{ doc.profile }} · {{ doc.created }}
 · data {{ doc.data }}</p>
<p>Detectors {{ detectors|join(", ") }} built from K good training images drawn per seed
(K = {{ doc.config.shots|join(", ") }}; the largest may be every good training image), alone and with
{{ doc.config.generated }} generated good images made from those K
({% if doc.config.diffusion %}SDEdit variations, strength {{ doc.config.diffusion.strength }}, with
{{ doc.config.diffusion.base_model }}{% elif doc.config.goods %}TVG generator {{ doc.config.goods.generator
}}{% if doc.config.goods.generator in ("vae", "tvg") %}, latent {{ doc.config.goods.latent }}, autoencoder
{{ doc.config.goods.vae or "fitted on the K images" }}{% if doc.config.goods.generator == "tvg" %}, CLIP
{{ doc.config.goods.clip or "none (guidance skipped)" }}{% endif %}{% endif %}{% else %}small rotation / shift /
scale, brightness / contrast drift{% if doc.config.augment.flip %}, flips{% endif %}{% endif %}).
Every model is fixed by this schedule and tested once on the held-out split ({{ spread }}, in %).
Gain: image AUROC with minus without generated goods, paired by seed.
{% if "af-patchcore" in detectors %}af-patchcore: anomalyforge's PatchCore (every patch kept, bank capped
at {{ doc.config.patchcore.max_bank }}). {% endif %}{% if doc.config.anomalib %}The others are anomalib's models
on the offline ImageNet EfficientNet-Lite0 ({{ doc.config.anomalib.epochs }} epochs for CFlow / FastFlow /
STFPM, PatchCore coreset {{ doc.config.anomalib.coreset }}).{% endif %}</p>
<table><thead><tr><th class="l">detector</th><th>good shots K</th><th class="l">training images</th>
<th>image AUROC</th><th>pixel AUROC</th><th>pixel AP</th><th>AUPRO</th><th>gain (image AUROC)</th>
<th>s / model</th></tr></thead><tbody>
{% for e in rows %}<tr{% if e.generated %} class="gen"{% endif %}><td class="l">{{ e.detector }}</td>
<td>{{ e.shots }}</td><td class="l">{{ e.label }}</td>{% for c in e.cells %}<td>{{ c }}</td>{% endfor %}
<td>{{ e.gain }}</td><td>{{ e.time }}</td></tr>
{% endfor %}</tbody></table>
<img src="{{ plot }}" alt="image AUROC and pixel AP against K">
<h3>Good images drawn</h3>
<table><thead><tr><th>seed</th>
<th class="l">first {{ maxk }} good training images (nested: K uses the first K)</th></tr></thead><tbody>
{% for s, goods in draws %}<tr><td>{{ s }}</td><td class="l small">{{ goods|join(", ") }}</td></tr>{% endfor %}
</tbody></table>
</body></html>
"""


def fewshot_figure(doc: dict) -> Figure:
    """Image AUROC and pixel AP against K (log scale), one line per detector and number of generated
    goods (dashed: with generated goods)."""
    fig = Figure(figsize=(9, 3.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, key, title in zip(axes, ("image_auroc", "pixel_ap"), ("image AUROC", "pixel AP"), strict=False):
        dets = list(dict.fromkeys(e.get("detector", "af-patchcore") for e in doc["summary"]))
        for i, d in enumerate(dets):
            for g in sorted({e["generated"] for e in doc["summary"]}):
                es = [e for e in doc["summary"] if e.get("detector", "af-patchcore") == d and e["generated"] == g
                      and e[key] is not None]
                one = all(int(e.get("seeds", 1)) < 2 for e in es)  # one seed: no error bars
                label = "K good only" if g == 0 else f"K good + {g} generated"
                ax.errorbar([e["shots"] for e in es], [100 * e[key] for e in es],
                            yerr=None if one else [100 * (e[f"{key}_std"] or 0.0) for e in es], marker="o",
                            capsize=3, color=f"C{i % 10}", linestyle="--" if g else "-",
                            label=label if len(dets) == 1 else f"{d}: {label}")
        ax.set_xscale("log", base=2)
        shots = sorted({e["shots"] for e in doc["summary"]})
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.minorticks_off()
        ax.set_xlabel("good shots K")
        ax.set_title(f"{doc.get('category')}: {title} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    return fig


def seeds_phrase(n: int) -> str:
    """What the table's numbers are: 'one seed, no spread' or 'mean ± standard deviation over n seeds'."""
    return "1 seed, so no spread is shown" if n == 1 else f"mean ± standard deviation over {n} seeds"


def write_fewshot_report(out: Path) -> Path:
    """Write `fewshot.png` and the self-contained `fewshot.html` from `<out>/fewshot.json`."""
    out = Path(out)
    try:
        doc = json.loads((out / "fewshot.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(out / "fewshot.json", f"cannot read few-shot results ({exc})") from None
    n_seeds = len(doc.get("config", {}).get("seeds") or [])
    spread = seeds_phrase(n_seeds)
    buf = io.BytesIO()
    fewshot_figure(doc).savefig(buf, format="png", dpi=110)
    write_bytes_atomic(out / "fewshot.png", buf.getvalue())

    def cell(e: dict, key: str) -> str:
        m, s = e.get(key), e.get(f"{key}_std")
        if m is None:
            return "—"
        # one seed has no spread: a "± 0.0" would claim a measured zero
        return f"{100 * m:.1f}" if int(e.get("seeds", n_seeds)) < 2 or s is None else f"{100 * m:.1f} ± {100 * s:.1f}"

    rows = [{"detector": e.get("detector", "af-patchcore"), "shots": e["shots"], "generated": e["generated"],
             "label": "K good" if not e["generated"] else f"K good + {e['generated']} generated",
             "cells": [cell(e, k) for k in ("image_auroc", "pixel_auroc", "pixel_ap", "pixel_aupro")],
             "gain": cell(e, "gain_image_auroc") if e["generated"] else "", "time": f"{e.get('time_s', 0.0):.1f}"}
            for e in doc.get("summary", [])]
    detectors = list(dict.fromkeys(r["detector"] for r in rows))
    maxk = max(doc["config"]["shots"])
    draws = sorted({(r["seed"], tuple(Path(g).name for g in r["goods"])) for r in doc["rows"].values()
                    if r["shots"] == maxk and not r["generated"]})  # the same draw for every detector
    plot = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    html = env.from_string(_PAGE).render(doc=doc, rows=rows, plot=plot, draws=draws, maxk=maxk, spread=spread,
                                         detectors=detectors)
    write_bytes_atomic(out / "fewshot.html", html.encode("utf-8"))
    return out / "fewshot.html"
