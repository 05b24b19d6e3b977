"""The demo's Report tab shows a report chosen at launch; --threshold auto starts the slider at its threshold."""
from __future__ import annotations

import argparse

import gradio as gr
import pytest
import torch

from snapsight.data.labeled import load_labeled
from snapsight.errors import SnapsightError
from snapsight.evaluate.model import from_function
from snapsight.evaluate.report import write_report
from snapsight.evaluate.run import EvaluateConfig, evaluate

from .conftest import write_labeled_csv


@pytest.fixture
def report_dir(tmp_path):
    def logits(x):  # a "zero-shot" model whose cosine is the mean red value: its threshold is a cosine
        m = x[:, 0].mean(dim=(1, 2))
        return torch.stack([m, 1 - m], dim=1) * 10

    model = from_function(logits, ["cat", "dog"], 8, kind="zeroshot", logit_scale=10.0)
    data = load_labeled(write_labeled_csv(tmp_path, n_per_class=15))
    report = evaluate(model, data, EvaluateConfig(checks=("accuracy", "calibration"), target_precision=0.01),
                      progress=False)
    return write_report(report, tmp_path / "report")


def test_report_tab_is_built_at_launch_with_the_report_inside(report_dir):
    from snapsight.demo.app import DemoApp, DemoConfig
    from snapsight.demo.models import ModelCache

    def no_loading(key, device):
        raise AssertionError(f"{key} was loaded")

    args = argparse.Namespace(report=str(report_dir), threshold="auto")
    from snapsight.commands.demo import _start_threshold

    start = _start_threshold(args)
    app = DemoApp(DemoConfig(report=str(report_dir), threshold=start), zeroshot=ModelCache(no_loading),
                  probes=ModelCache(no_loading))
    blocks = app.build()
    comps = list(blocks.blocks.values())
    assert any(isinstance(c, gr.Tab) and c.label == "Report" for c in comps)
    frame = next(c for c in comps if isinstance(c, gr.HTML) and c.elem_id == "report-html")
    assert "srcdoc=" in frame.value and "data:image/png;base64," in frame.value and 'sandbox=""' in frame.value
    summary = next(c for c in comps if isinstance(c, gr.Markdown) and c.elem_id == "report-summary")
    assert "calibration: ECE" in summary.value
    slider = next(c for c in comps if isinstance(c, gr.Slider) and "None of these" in str(c.label))
    assert slider.value == pytest.approx(start) and start == pytest.approx(app.report_tab.threshold)


def test_a_folder_without_a_report_fails_the_start(tmp_path):
    from snapsight.commands.demo import _start_threshold
    from snapsight.demo.report_tab import ReportTab

    with pytest.raises(SnapsightError, match="holds no trust report"):
        ReportTab(str(tmp_path))
    with pytest.raises(SnapsightError, match="add --report"):
        _start_threshold(argparse.Namespace(report=None, threshold="auto"))
    with pytest.raises(SnapsightError, match="from 0 to 1"):
        _start_threshold(argparse.Namespace(report=None, threshold="1.5"))
