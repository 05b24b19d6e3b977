"""The demo's Report tab: a trust report (``snapsight evaluate --out DIR``) chosen when the demo starts
(``snapsight demo --report DIR``), shown as its summary and its self-contained HTML page.

Nobody at the page names a folder: the report is read once, at launch, and its HTML (plots embedded as base64)
goes into the page inside a sandboxed ``<iframe srcdoc>``, so it needs no file route and its styles stay inside
the frame. No event reads the disk.
"""
from __future__ import annotations

import html
from typing import Any

import gradio as gr

from snapsight.evaluate.report import read_report, summary_lines

FRAME_HEIGHT_PX = 1400


class ReportTab:
    """A saved trust report, read at launch (a folder without one fails the start with one sentence)."""

    def __init__(self, report_dir: str):
        self.report_dir = report_dir
        self.report, self.html = read_report(report_dir)

    @property
    def threshold(self) -> float | None:
        """The zero-shot "none of these" threshold the report chose, if any."""
        th = self.report.get("checks", {}).get("calibration", {}).get("threshold")
        return float(th["threshold"]) if th and th.get("kind") == "cosine" else None

    def summary_markdown(self) -> str:
        lines = summary_lines(self.report)
        return f"**{lines[0]}**\n\n" + "\n".join(f"- {line}" for line in lines[1:])

    def frame_html(self) -> str:
        return (f'<iframe id="report-frame" title="trust report" sandbox="" style="width:100%;border:0;'
                f'height:{FRAME_HEIGHT_PX}px" srcdoc="{html.escape(self.html, quote=True)}"></iframe>')

    def build(self) -> dict[str, Any]:
        """The tab's components (inside the caller's ``gr.Blocks``)."""
        with gr.Tab("Report"):
            summary = gr.Markdown(self.summary_markdown(), elem_id="report-summary")
            frame = gr.HTML(self.frame_html(), elem_id="report-html")
        return {"summary": summary, "frame": frame}
