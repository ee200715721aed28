"""Make docs/screenshot.png: the page after a two-candidate generation on the tiny model.

    .venv/bin/python tools/screenshot_page.py [--output docs/screenshot.png]

Needs Debian's chromium (apt-get install chromium) and the dev requirements (playwright).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest import photo_like  # noqa: E402
from web_support import CHROMIUM, CHROMIUM_FLAGS, running_app  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "screenshot.png")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="i2v-screenshot-"))
    picture = work / "harbour.png"
    photo_like(768, 512, seed=3).save(picture)
    with running_app(work / "outputs") as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(120_000)
        page.goto(server.url)
        page.wait_for_selector("#plan-verdict [data-verdict]")
        page.set_input_files("#input-image input[type=file]", str(picture))
        page.wait_for_selector("#image-report .findings")
        page.locator("#prompt textarea").fill("a sailboat drifting slowly to the left, waves rippling")
        page.get_by_text("Fast check", exact=False).first.click()
        page.click("#advanced button")
        page.click("#resolution input")
        page.get_by_role("option", name="256p", exact=True).click()
        for elem_id, value in (("steps", 12), ("candidates", 2)):
            field = page.locator(f"#{elem_id} input[type=number]")
            field.fill(str(value))
            field.press("Enter")
        page.wait_for_function("document.querySelector('#plan-verdict').innerText.includes('12 steps')")
        page.click("#generate")
        page.wait_for_selector("#job-status [data-state=done]")
        page.wait_for_function("document.querySelector('#video-1 video')?.readyState >= 2")
        page.wait_for_selector("#gpu-panel[data-state=none]")
        page.locator("#history-gallery").scroll_into_view_if_needed()  # its thumbnails load lazily
        page.wait_for_function("[...document.querySelectorAll('#history-gallery img')].every(i => i.complete "
                               "&& i.naturalWidth > 0) && document.querySelectorAll('#history-gallery img').length")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.output), full_page=True)
        browser.close()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
