"""Render a trust report: ``report.json`` (every number), ``report.html`` (self-contained: its plots are PNGs
embedded as base64, so the file can be mailed or opened offline), ``threshold.json`` (the "none of these" threshold
``classify --threshold auto`` reads) and a few summary lines for the terminal.
"""
from __future__ import annotations

import base64
import html
import io
import math
import os
from pathlib import Path
from typing import Any

from ..artifacts.files import atomic_write_json, atomic_write_text, read_json
from ..errors import SnapsightError
from ..probe.report import confusion_figure

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
THRESHOLD_JSON = "threshold.json"
DEFAULT_MODEL_SPEC = "clip:default"  # how a report names the offline default model (classify compares it)


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A short plain-text summary: one line per check."""
    c = report["checks"]
    d = report["data"]
    lines = [f"{report['model']['name']} ({report['model']['kind']}) on {d['name']}: {d['images']} images"]
    if "accuracy" in c:
        a = c["accuracy"]
        lo, hi = a["top1_ci95"]
        lines.append(f"accuracy: top-1 {_pct(a['top1'])} (95% CI {_pct(lo)}-{_pct(hi)}), top-5 {_pct(a['top5'])}")
        g = a.get("groups")
        if g and g["gaps"]["accuracy"]:
            gap = g["gaps"]["accuracy"]
            worst = g["groups"][g["worst_group"]]
            lines.append(f"groups ({report['group']['column']}): accuracy gap {_pct(gap['gap'])} between "
                         f"{gap['highest']!r} and {gap['lowest']!r}; worst group {g['worst_group']!r} "
                         f"{_pct(worst['accuracy']['value'])} of {worst['n']}")
    if "calibration" in c:
        k = c["calibration"]
        t = k["temperature"]
        bound = " (at the end of its search range: no useful fit)" if k.get("temperature_at_search_bound") else ""
        line = (f"calibration: ECE {_pct(k['ece'])}; temperature {t['value']:.3g}{bound} takes held-out ECE from "
                f"{_pct(t['ece_before'])} to {_pct(t['ece_after'])}")
        th = k.get("threshold")
        line += (f"; threshold {th['threshold']:.4f} ({th['kind']}) gives {_pct(th['precision'])} precision at "
                 f"{_pct(th['coverage'])} coverage" if th else
                 f"; no threshold reaches {_pct(k['target_precision'])} precision on at least "
                 f"{k.get('min_accepted', 1)} images")
        lines.append(line)
    if "corruptions" in c:
        k = c["corruptions"]
        worst = min(k["accuracy"], key=lambda n: k["accuracy"][n][-1])
        lines.append(f"corruptions: mean accuracy {_pct(k['mean'])}; worst {worst} at severity 3: "
                     f"{_pct(k['accuracy'][worst][-1])}")
    if "adversarial" in c:
        k = c["adversarial"]
        pairs = ", ".join(f"{e * 255:.0f}/255: {_pct(a)}" for e, a in zip(k["eps"], k["worst"]) if e > 0)
        lines.append(f"adversarial (FGSM+PGD-{k['steps']}, {k['n']} images): clean {_pct(k['clean'])}; {pairs}")
    if "typographic" in c:
        k = c["typographic"]
        lines.append(f"typographic: accuracy {_pct(k['clean'])} -> {_pct(k['accuracy'])}; prediction becomes the "
                     f"written label {_pct(k['written_label_rate'])} (chance {_pct(k['chance_rate'])})")
    if "cost" in c:
        k = c["cost"]
        gf = f", {k['gflops_per_image']:.3g} GFLOPs/image" if k.get("gflops_per_image") else ""
        size = f", {k['size_on_disk_mb']:.1f} MB on disk" if k.get("size_on_disk_mb") is not None else ""
        lines.append(f"cost: {k['parameters'] / 1e6:.2f} M parameters{size}{gf}; {k['ms_per_image_batch1']:.2f} ms/image "
                     f"at batch 1, {k['images_per_s_batch']:.0f} images/s at batch {k['batch']} ({k['device']})")
    if "saliency" in c and c["saliency"].get("n"):
        k = c["saliency"]
        h, r = k["heatmap"], k["random"]
        lines.append(f"saliency ({k['n']} images): deletion AUC {h['deletion_auc']:.3f} vs random {r['deletion_auc']:.3f} "
                     f"(lower is better), insertion AUC {h['insertion_auc']:.3f} vs random {r['insertion_auc']:.3f} "
                     f"(higher is better)")
    if "seconds" in report:
        lines.append(f"time: {report['seconds']['total']:.1f} s")
    return lines


# ------------------------------------------------------------------------------------------------------ plots
def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _accuracy_lines(fig: Any, ax: Any, xlabel: str, ylabel: str, title: str) -> str:
    """Finish a plot of accuracy lines (axes, 0-1 range, legend, title) and return it as a PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _png(fig)


def plots(report: dict[str, Any]) -> dict[str, str]:
    """``{plot name: base64 PNG}`` for every check in the report."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    c = report["checks"]
    out: dict[str, str] = {}
    if "accuracy" in c:
        a = c["accuracy"]
        names = report["model"]["classes"]
        n = len(names)
        if n <= 40:
            out["confusion"] = _png(confusion_figure(a["confusion"], names))
        g = a.get("groups")
        if g:
            gs = list(g["groups"])
            vals = [g["groups"][k]["accuracy"]["value"] for k in gs]
            lo = [v - g["groups"][k]["accuracy"]["ci95"][0] for k, v in zip(gs, vals)]
            hi = [g["groups"][k]["accuracy"]["ci95"][1] - v for k, v in zip(gs, vals)]
            fig, ax = plt.subplots(figsize=(max(4, 1 + 0.8 * len(gs)), 3.2))
            ax.bar(range(len(gs)), vals, yerr=[lo, hi], capsize=4, color="#4c72b0")
            ax.set_xticks(range(len(gs)), [f"{k}\n(n={g['groups'][k]['n']})" for k in gs], fontsize=8)
            ax.set_ylim(0, 1)
            ax.set_ylabel("accuracy (95% CI)")
            ax.set_title(f"accuracy per group: {report['group']['column']}")
            out["groups"] = _png(fig)
    if "calibration" in c:
        k = c["calibration"]
        rel = k["reliability"]
        fig, ax = plt.subplots(figsize=(4, 4))
        centres = [(a + b) / 2 for a, b in zip(rel["edges"][:-1], rel["edges"][1:])]
        accs = [a if a is not None else 0.0 for a in rel["accuracy"]]
        ax.bar(centres, accs, width=1 / len(centres), edgecolor="k", color="#4c72b0", label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ax.set_xlabel("confidence (top-1 probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"reliability, ECE {_pct(k['ece'])}")
        ax.legend(loc="upper left", fontsize=8)
        out["reliability"] = _png(fig)
        rc = k["risk_coverage"]
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.plot(rc["coverage"], rc["risk"], color="#c44e52")
        th = k.get("threshold")
        if th:
            ax.scatter([th["coverage"]], [1 - th["precision"]], color="k", zorder=3,
                       label=f"threshold {th['threshold']:.3f}")
            ax.legend(fontsize=8)
        ax.set_xlabel("coverage (share answered)")
        ax.set_ylabel("risk (error among answered)")
        ax.set_title(f"risk-coverage ({rc['score']})")
        out["risk_coverage"] = _png(fig)
    if "corruptions" in c:
        k = c["corruptions"]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        clean = c.get("accuracy", {}).get("top1")
        for name, accs in k["accuracy"].items():
            ax.plot([0, *k["severities"]], [clean if clean is not None else float("nan"), *accs], marker="o",
                    label=name)
        ax.set_xticks([0, *k["severities"]])
        out["corruptions"] = _accuracy_lines(fig, ax, "severity (0 = clean)", "top-1 accuracy", "corruptions")
    if "adversarial" in c:
        k = c["adversarial"]
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        xs = [e * 255 for e in k["eps"]]
        for key in ("fgsm", "pgd", "worst"):
            ax.plot(xs, k[key], marker="o", label={"worst": "both (worst case)"}.get(key, key.upper()))
        out["adversarial"] = _accuracy_lines(fig, ax, "eps (x 1/255, L-infinity)", "robust accuracy", "adversarial")
    if "saliency" in c and c["saliency"].get("n"):
        k = c["saliency"]
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
        for ax, key in zip(axes, ("deletion", "insertion")):
            for name, style in (("heatmap", "-"), ("random", "--")):
                ax.plot(k["fraction"], k[name][key], style,
                        label=f"{name} (AUC {k[name][key + '_auc']:.3f})")
            ax.set_xlabel(f"share of pixels {'removed' if key == 'deletion' else 'restored'}")
            ax.set_ylabel("probability of the explained class")
            ax.set_title(key)
            ax.legend(fontsize=8)
        out["saliency"] = _png(fig)
    return out


# ------------------------------------------------------------------------------------------------------ HTML
def _table(header: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _img(pngs: dict[str, str], name: str, alt: str) -> str:
    if name not in pngs:
        return ""
    return f'<img class="plot" data-plot="{name}" alt="{html.escape(alt)}" src="data:image/png;base64,{pngs[name]}">'


def render_html(report: dict[str, Any], pngs: dict[str, str] | None = None) -> str:
    """The report as one self-contained HTML page (no scripts, no external files)."""
    pngs = plots(report) if pngs is None else pngs
    c = report["checks"]
    esc = html.escape
    parts = [f"<h1>Trust report: {esc(report['model']['name'])}</h1>",
             (f"<p>{esc(report['model']['kind'])} model on <b>{esc(report['data']['name'])}</b>, "
             f"{report['data']['images']} of {report['data']['of']} images, input "
             f"{'x'.join(map(str, report['model']['input_size']))} px, {esc(report['model']['device'])}, "
             f"{esc(report['model']['precision'])}. {esc(report.get('cpu', ''))}</p>"),
             "<h2>Summary</h2><ul>" + "".join(f"<li>{esc(s)}</li>" for s in summary_lines(report)) + "</ul>"]
    if "accuracy" in c:
        a = c["accuracy"]
        parts.append("<h2>Accuracy</h2>")
        parts.append(_table(["class", "images", "recall", "recall 95% CI", "precision"],
                            [[p["class"], p["n"], _pct(p["recall"]), (f"{_pct(p['recall_ci95'][0])}-"
                              f"{_pct(p['recall_ci95'][1])}"), _pct(p["precision"])] for p in a["per_class"]]))
        parts.append(_img(pngs, "confusion", "confusion matrix"))
        g = a.get("groups")
        if g:
            parts.append(f"<h2>Groups: {esc(report['group']['column'])}</h2><p>{esc(report['group']['source'])}. "
                         f"Groups under {g['min_group_size']} images are shown but left out of the gaps.</p>")
            parts.append(_table(["group", "images", "accuracy", "95% CI"],
                                [[k, v["n"], _pct(v["accuracy"]["value"]),
                                  f"{_pct(v['accuracy']['ci95'][0])}-{_pct(v['accuracy']['ci95'][1])}"]
                                 for k, v in g["groups"].items()]))
            rows = []
            for cls, gap in g["gaps"]["recall"].items():
                sel = g["gaps"]["selection_rate"].get(cls)
                rows.append([cls, _pct(gap["gap"]) if gap else "n/a",
                             f"{gap['highest']} / {gap['lowest']}" if gap else "",
                             _pct(sel["gap"]) if sel else "n/a", f"{sel['highest']} / {sel['lowest']}" if sel else ""])
            parts.append("<h3>Gaps per class</h3>" + _table(
                ["class", "recall gap", "highest / lowest group", "selection-rate gap", "highest / lowest group"], rows))
            parts.append(_img(pngs, "groups", "accuracy per group"))
    if "calibration" in c:
        k = c["calibration"]
        parts.append("<h2>Calibration</h2>")
        parts.append(_img(pngs, "reliability", "reliability diagram"))
        parts.append(_img(pngs, "risk_coverage", "risk-coverage curve"))
        th = k.get("threshold")
        parts.append(f"<p>Temperature {k['temperature']['value']:.4g}, fitted on {k['temperature']['fitted_on']} images; "
                     f"ECE on the other {k['temperature']['measured_on']}: {_pct(k['temperature']['ece_before'])} before, "
                     f"{_pct(k['temperature']['ece_after'])} after. "
                     + (f"Answering only when the {esc(th['kind'])} is at least {th['threshold']:.4f} gives "
                        f"{_pct(th['precision'])} precision on {_pct(th['coverage'])} of the images (target "
                        f"{_pct(k['target_precision'])})." if th else
                        f"No threshold reaches {_pct(k['target_precision'])} precision on at least "
                        f"{k.get('min_accepted', 1)} images.") + "</p>")
    if "corruptions" in c:
        k = c["corruptions"]
        parts.append("<h2>Corruptions</h2>")
        parts.append(_table(["corruption", *[f"severity {s}" for s in k["severities"]]],
                            [[n, *map(_pct, v)] for n, v in k["accuracy"].items()]))
        parts.append(_img(pngs, "corruptions", "accuracy under corruptions"))
    if "adversarial" in c:
        k = c["adversarial"]
        parts.append(f"<h2>Adversarial (L-infinity, PGD {k['steps']} steps, {k['n']} images)</h2>")
        parts.append(_table(["eps", "FGSM", "PGD", "both"],
                            [[f"{e * 255:.0f}/255", _pct(f), _pct(p), _pct(w)]
                             for e, f, p, w in zip(k["eps"], k["fgsm"], k["pgd"], k["worst"])]))
        parts.append(_img(pngs, "adversarial", "robust accuracy against eps"))
    if "typographic" in c:
        k = c["typographic"]
        parts.append("<h2>Typographic attack</h2>")
        parts.append(f"<p>A wrong label written on each image ({esc(k['font'])}): accuracy {_pct(k['clean'])} -> "
                     f"{_pct(k['accuracy'])}; the prediction became the written label on "
                     f"{_pct(k['written_label_rate'])} of the images (chance {_pct(k['chance_rate'])}).</p>")
    if "cost" in c:
        k = c["cost"]
        parts.append("<h2>Cost</h2>")
        parts.append(_table(["parameters", "size on disk (MB)", "GFLOPs/image", "ms/image (batch 1)",
                             f"images/s (batch {k['batch']})", "device", "threads"],
                            [[f"{k['parameters']:,}", k["size_on_disk_mb"],
                              "n/a" if k["gflops_per_image"] is None else f"{k['gflops_per_image']:.3g}",
                              f"{k['ms_per_image_batch1']:.2f}", f"{k['images_per_s_batch']:.0f}", k["device"],
                              k["threads"]]]))
    if "saliency" in c and c["saliency"].get("n"):
        k = c["saliency"]
        parts.append("<h2>Is the heatmap faithful?</h2>")
        parts.append(f"<p>Deletion and insertion curves of the demo's heatmap against a random map over {k['n']} "
                     f"images; the heatmap beat the random map on {_pct(k['heatmap_beats_random']['deletion'])} "
                     f"(deletion) and {_pct(k['heatmap_beats_random']['insertion'])} (insertion) of them.</p>")
        parts.append(_img(pngs, "saliency", "deletion and insertion curves"))
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
             "img.plot{display:block;margin:.5em 0;max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>snapsight trust report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def write_report(report: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write ``report.json``, ``report.html`` and (when a threshold was chosen for a zero-shot model)
    ``threshold.json`` into ``out_dir``; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / REPORT_JSON, report)
    atomic_write_text(out / REPORT_HTML, render_html(report))
    th = report["checks"].get("calibration", {}).get("threshold")
    if th and th.get("kind") == "cosine":
        atomic_write_json(out / THRESHOLD_JSON, {"threshold": th["threshold"], "target_precision": th["target_precision"],
                                                 "precision": th["precision"], "coverage": th["coverage"],
                                                 "model": report["model"]["name"], "labels": report["model"]["classes"],
                                                 "data": report["data"]["name"]})
    return out


def read_threshold(report_dir: str | os.PathLike) -> dict[str, Any]:
    """The threshold a report chose (``threshold.json``); one sentence when there is none."""
    path = Path(report_dir) / THRESHOLD_JSON
    if not path.is_file():
        if (Path(report_dir) / REPORT_JSON).is_file():
            raise SnapsightError(f"the report in {report_dir} chose no threshold (a probe classifier's report, a report "
                                 "without the calibration check, or no threshold reached the target precision)")
        raise SnapsightError(f"{report_dir} holds no trust report; make one with `snapsight evaluate --out {report_dir}`")
    return read_json(path)


def read_report(report_dir: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """``(report.json, report.html)`` of a saved report; one sentence when the folder holds none."""
    path = Path(report_dir)
    if not (path / REPORT_JSON).is_file() or not (path / REPORT_HTML).is_file():
        raise SnapsightError(f"{report_dir} holds no trust report ({REPORT_JSON} and {REPORT_HTML}); make one with "
                             f"`snapsight evaluate --out {report_dir}`")
    return read_json(path / REPORT_JSON), (path / REPORT_HTML).read_text(encoding="utf-8")
