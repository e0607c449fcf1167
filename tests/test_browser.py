"""The rendered report and a comparison report in headless Chromium (Debian's `chromium` + `chromium-driver`, driven
by selenium): every <img> loaded, no console errors, a full-page screenshot saved.

Screenshots go to $DIFFREPRO_SCREENSHOTS (a folder) when set, otherwise beside the rendered pages in tmp.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from diffrepro.reports import compare, tables
from test_report import built  # noqa: F401  (module fixture: synthetic results -> aggregate -> report)

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--window-size=1200,900")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM or not DRIVER:
        pytest.skip("chromium / chromedriver not installed (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (PyPI) not installed")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    yield driver
    driver.quit()


def check_page(driver, page: Path, screenshot: Path) -> list[dict]:
    """Load `page`; return its <img> states; fail on console errors; save a full-page screenshot."""
    import base64

    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop earlier pages' messages
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"))
    images = driver.execute_script(
        "return Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}))")
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, f"console errors on {page.name}: {errors}"
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    assert screenshot.stat().st_size > 10_000
    return images


def shots_dir(default: Path) -> Path:
    return Path(os.environ.get("DIFFREPRO_SCREENSHOTS", default))


def test_report_in_chromium(browser, built):  # noqa: F811
    images = check_page(browser, built / "reports/index.html", shots_dir(built / "reports") / "index.png")
    assert len(images) >= 5
    assert all(i["complete"] and i["width"] > 0 for i in images), images


def viewport_shot(driver, element_id: str, dest: Path) -> None:
    """Scroll `element_id` to the top of the window and save what the reader sees there."""
    driver.execute_script(f"document.getElementById('{element_id}').scrollIntoView()")
    dest.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(dest))
    assert dest.stat().st_size > 10_000


def test_report_top_sampler_section_and_appendix(browser, built):  # noqa: F811
    """What a reader sees first (setup and the claims scorecard), the sampler section and the appendix, whose
    long tables stay folded until opened."""
    out = shots_dir(built / "reports")
    browser.get((built / "reports/index.html").resolve().as_uri())
    state = browser.execute_script("""
        const card = document.getElementById('scorecard-claims');
        const details = Array.from(document.querySelectorAll('#appendix details'));
        return {rows: card ? card.tBodies[0].rows.length : 0,
                verdicts: Array.from(document.querySelectorAll('#scorecard td[class*=verdict-]')).length,
                scorecardTop: document.getElementById('scorecard').getBoundingClientRect().top,
                details: details.length, open: details.filter(d => d.open).length,
                visible: details.length ? details[0].querySelector('table').checkVisibility() : null};
    """)
    from diffrepro.reports.claims import load_claims

    assert state["rows"] == len(load_claims()) == state["verdicts"]
    assert state["details"] >= 1 and state["open"] == 0 and state["visible"] is False  # collapsed
    browser.save_screenshot(str(out / "report_top.png"))
    viewport_shot(browser, "scorecard", out / "report_scorecard.png")
    viewport_shot(browser, "spine", out / "report_samplers.png")
    browser.execute_script("document.querySelectorAll('#appendix details').forEach(d => d.open = true)")
    assert browser.execute_script("return document.querySelector('#appendix details table').checkVisibility()")
    viewport_shot(browser, "appendix", out / "report_appendix.png")


def test_comparison_in_chromium(browser, built, tmp_path):  # noqa: F811
    """A comparison of the synthetic results with a copy whose ddpm numbers moved (same renderer as the CLI)."""
    import polars as pl

    old = tables.read_parquet(built / "results/tables/metrics_agg.parquet", "old")
    moved = [f"{m}_mean" for m in ("swd", "fid_digits_classifier")]
    new = old.with_columns(*[pl.when(pl.col("sampler") == "ddpm").then(pl.col(c) * 1.5).otherwise(pl.col(c)).alias(c)
                             for c in moved])
    params = [{"file": "params/default.yaml", "key": "sampling.sampler_options.ddpm.eta", "old": 1.0, "new": 0.5}]
    html, md = compare.render_comparison(compare.Version("v1", None), compare.Version("v2", None), old, new, params,
                                         None, tmp_path / "compare")
    images = check_page(browser, html, shots_dir(tmp_path) / "compare.png")
    assert len(images) == 2 and all(i["complete"] and i["width"] > 0 for i in images), images
    assert "class=\"worse\"" in html.read_text() and json.dumps(params[0]["key"])[1:-1] in md.read_text()


def test_check_catches_broken_pages(browser, tmp_path):
    """Negative control: a missing image and a script error must fail the check."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>x</title></head><body>'
                    '<img src="missing.png" alt="gone"><script>undefined_function();</script></body></html>')
    with pytest.raises(AssertionError, match="console errors on broken.html"):
        check_page(browser, page, tmp_path / "broken.png")
