"""The web page in a real headless browser (Debian's chromium driven by Playwright): sign in
with a token, upload the sample video, see the job reach done and its video load."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
from apiserver import TOKENS, api_env, running_api
from conftest import ROOT, SAMPLE, Worker
from helpers import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

# The docs' screenshot is rewritten only when asked (POSEQUEUE_DOCS_SCREENSHOTS=1): a test run
# leaves the checkout clean.
DOCS_SHOT = ROOT / "docs" / "images" / "api-job-page.png"
SCREENSHOT = DOCS_SHOT if os.environ.get("POSEQUEUE_DOCS_SCREENSHOTS") == "1" else None


def _browser_missing() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if CHROMIUM is None:
        return "no chromium (apt-get install -y chromium, or POSEQUEUE_CHROMIUM=/path/to/it)"
    return None


@pytest.fixture(scope="module")
def page_api(worker: Worker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)  # CI installs it (Makefile's browser set-up)
        pytest.skip(missing)
    with running_api(api_env(dict(os.environ)), tmp_path_factory.mktemp("api") / "api.log") as client:
        yield client


def test_sign_in_upload_and_watch_the_job_finish(page_api: httpx.Client) -> None:
    """A coach signs in, uploads the clip, follows it to done and the video element loads."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(str(page_api.base_url))
            expect(page.locator("#signin")).to_be_visible()
            page.fill("#token", "wrong-token")
            page.click("#signin-form button")
            expect(page.locator("#signin-error")).to_have_text("That token was not accepted.")
            page.fill("#token", TOKENS[1])
            page.click("#signin-form button")
            expect(page.locator("#home")).to_be_visible()
            expect(page.locator("#model option")).not_to_have_count(0)

            page.set_input_files("#file", str(SAMPLE))
            page.click("#upload-button")
            page.wait_for_url("**/#/jobs/*")
            status = page.locator("#job-status")
            expect(status).to_have_text("done", timeout=120_000)
            expect(page.locator("#job-frames")).to_have_text("90 / 90 frames")
            # then the motion analysis: the overlay video plays, the plots and the ROM table show
            expect(page.locator("#job-analysis")).to_have_text("Motion analysis: done", timeout=180_000)
            page.wait_for_function(
                "() => { const v = document.getElementById('video');"
                " return !v.hidden && v.dataset.name === 'overlay.mp4' && v.readyState >= 2 }",
                timeout=30_000,
            )
            expect(page.locator("#downloads a", has_text="poses.json")).to_have_count(1)
            expect(page.locator("#downloads a", has_text="report.html")).to_have_count(1)
            expect(page.locator("#plots img").first).to_be_visible()
            expect(page.locator("#plots img[alt='preview.png']")).to_have_count(0)
            expect(page.locator("#rom tbody tr").first).to_be_visible()
            expect(page.locator("#skeleton-toggle")).to_be_hidden()  # the overlay has its own
            page.wait_for_function(
                "() => [...document.querySelectorAll('#plots img')]"
                ".every((i) => i.complete && i.naturalWidth > 0)",
                timeout=60_000,
            )
            shot = page.screenshot(path=str(SCREENSHOT) if SCREENSHOT else None, full_page=True)
            assert len(shot) > 10_000, "the job page's screenshot is blank"

            job_id = page.url.rsplit("/", 1)[-1]
            page.click("text=all jobs")
            row = page.locator("#jobs tbody tr", has_text=job_id[:8])
            expect(row.locator(".status")).to_have_text("done")

            page.goto(f"{page_api.base_url}/docs")  # Swagger UI, with nothing from a CDN
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("posequeue")
            expect(page.locator(".opblock-summary-path", has_text="/v1/jobs/{job_id}")).not_to_have_count(0)
        finally:
            browser.close()


def test_without_analysis_the_page_draws_the_poses_on_the_input(page_api: httpx.Client) -> None:
    """A job submitted without the analysis shows the input video with the poses drawn over it
    as it plays, and the poses preview; no range-of-motion table."""
    from playwright.sync_api import expect, sync_playwright

    response = page_api.post(
        "/v1/jobs",
        files={"file": (SAMPLE.name, SAMPLE.read_bytes(), "video/mp4")},
        data={"analysis": "false"},
    )
    job_id = response.json()["id"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.add_init_script(f"localStorage.setItem('posequeue-token', '{TOKENS[0]}')")  # signed in
            page.goto(f"{page_api.base_url}#/jobs/{job_id}")
            expect(page.locator("#job-status")).to_have_text("done", timeout=120_000)
            page.wait_for_function(
                "() => { const v = document.getElementById('video');"
                " return v.dataset.name === 'input.mp4' && v.readyState >= 2 }",
                timeout=30_000,
            )
            # the poses are drawn over the input video: the canvas holds opaque pixels
            page.wait_for_function(
                "() => { const c = document.getElementById('skeleton');"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false }",
                timeout=30_000,
            )
            expect(page.locator("#plots img[alt='preview.png']")).to_have_count(1)
            expect(page.locator("#rom tbody tr")).to_have_count(0)
            expect(page.locator("#job-analysis")).to_have_text("")
        finally:
            browser.close()
