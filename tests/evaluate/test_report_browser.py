"""The HTML report in a real browser (headless Debian chromium driven by Playwright, as tests/demo/test_browser.py):
it opens from the file alone and every plot decodes to a picture."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from snapsight.evaluate.model import from_function
from snapsight.evaluate.report import write_report
from snapsight.evaluate.run import EvaluateConfig, evaluate

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

if not Path(CHROMIUM).is_file():
    pytest.skip("Debian chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")


def _report_dir(tmp_path: Path) -> Path:
    from snapsight.data.labeled import load_labeled

    from .conftest import write_labeled_csv

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 2, 3)

    def logits(x):
        return conv(x).mean(dim=(2, 3)) * 20

    model = from_function(logits, ["cat", "dog"], 16, module=conv)
    data = load_labeled(write_labeled_csv(tmp_path, n_per_class=15))
    report = evaluate(model, data, EvaluateConfig(group="site", min_group_size=1, saliency_limit=3,
                                                  saliency_samples=2, pgd_steps=2), progress=False)
    return write_report(report, tmp_path / "report")


def test_html_report_opens_in_the_browser_and_shows_its_plots(tmp_path):
    out = _report_dir(tmp_path)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto((out / "report.html").as_uri(), wait_until="load")
            assert "Trust report" in page.locator("h1").inner_text()
            plots = page.locator("img.plot")
            names = sorted(plots.evaluate_all("els => els.map(e => e.dataset.plot)"))
            assert names == sorted(["confusion", "groups", "reliability", "risk_coverage", "corruptions",
                                    "adversarial", "saliency"])
            page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=60_000)
            sizes = plots.evaluate_all("els => els.map(e => [e.naturalWidth, e.naturalHeight])")
            assert all(w > 100 and h > 100 for w, h in sizes), sizes
            # one picture per plot, each different: no plot is a blank copy of another
            shots = {plots.nth(i).screenshot() for i in range(plots.count())}
            assert len(shots) == len(names)
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "report.png").stat().st_size > 0


def test_demo_report_tab_shows_the_report_in_the_browser(tmp_path):
    from snapsight.demo.app import DemoApp, DemoConfig
    from snapsight.demo.models import ModelCache
    from tests.demo.conftest import free_port

    def no_loading(key, device):
        raise AssertionError(f"{key} was loaded")

    out = _report_dir(tmp_path)
    app = DemoApp(DemoConfig(report=str(out), port=free_port(), device="cpu"), zeroshot=ModelCache(no_loading),
                  probes=ModelCache(no_loading))
    demo, url = app.launch(app.build(), block=False, quiet=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 1000})
                page.goto(url, wait_until="domcontentloaded")
                page.get_by_role("tab", name="Report").click(timeout=60_000)
                page.locator("#report-summary").get_by_text("accuracy: top-1").wait_for(timeout=60_000)
                frame = page.frame_locator("#report-frame")
                frame.locator("h1").get_by_text("Trust report").wait_for(timeout=60_000)
                plots = frame.locator("img.plot")
                assert plots.count() == 7
                for _ in range(120):  # a loaded CI machine may take a while to decode seven PNGs
                    sizes = plots.evaluate_all("els => els.map(e => [e.complete, e.naturalWidth])")
                    if all(done and w > 100 for done, w in sizes):
                        break
                    page.wait_for_timeout(500)
                assert all(done and w > 100 for done, w in sizes), sizes
            finally:
                browser.close()
    finally:
        demo.close()
