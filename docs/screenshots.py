"""Screenshots of the built site (``make docs`` first) into docs/assets/, with the headless Chromium and
the flags of the report's browser test (tests/report/test_browser.py):

    python docs/screenshots.py                      # home page and one how-to page
    python docs/screenshots.py how-to/sweeps/        # any pages, by their URL path

Serves site/ on a local port (the pages' relative links and search work as when deployed).
Needs Chromium and chromedriver: apt-get install chromium chromium-driver.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1280,900")  # fmt: skip
PAGES = {"": "site-home.png", "how-to/data/": "site-how-to-data.png"}


def main(pages: dict[str, str]) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    site = ROOT / "site"
    if not (site / "index.html").is_file():
        sys.exit("site/ is not built: run `make docs` first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="docs-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        for page, name in pages.items():
            driver.get(f"http://127.0.0.1:{server.server_port}/{page}")
            deadline = time.time() + 20  # Material renders with JavaScript after the load event
            while time.time() < deadline and not driver.execute_script(
                "return document.readyState === 'complete' && !!document.querySelector('.md-content h1')"
            ):
                time.sleep(0.2)
            time.sleep(1.0)
            out = ROOT / "docs" / "assets" / name
            out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(out))
            print(f"{driver.title!r} -> {out.relative_to(ROOT)}")
    finally:
        driver.quit()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    main({p: p.strip("/").replace("/", "-") + ".png" for p in args} if args else PAGES)
