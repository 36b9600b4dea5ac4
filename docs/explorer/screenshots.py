"""The explorer's screenshots in docs/: a real `latentspace serve` on the store that
build_demo_store.py makes, driven in Debian's headless chromium by Playwright.

    .venv/bin/python docs/explorer/build_demo_store.py /tmp/explorer-store
    .venv/bin/python docs/explorer/screenshots.py /tmp/explorer-store
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parents[1]


def main(folder: str) -> None:
    root = Path(folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "latentspace.cli.app", "serve", str(root / "store"), "--port", str(port),
           "--latent", f"{root / 'digits-vae'}:{root / 'digits.npz'}"]
    server = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "2"})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1440, "height": 880})
            errors = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

            def ready(text: str, sel: str = "#status") -> None:
                page.wait_for_function(f"document.querySelector('{sel}').textContent.includes({text!r})", timeout=300_000)

            page.goto(f"{url}/#c=stdlib&m=umap&color=package")
            ready("records in")
            page.fill("#query", "read a file line by line")
            page.press("#query", "Enter")
            page.wait_for_function("document.querySelectorAll('#hits li').length === 10", timeout=60_000)
            page.screenshot(path=str(DOCS / "explorer-query.png"))
            page.goto(f"{url}/#c=stdlib&m=umap")
            page.reload()
            ready("records in")
            page.click("#clusters")
            ready("clusters (k-means")
            page.screenshot(path=str(DOCS / "explorer-clusters.png"))
            page.goto(f"{url}/#c=stdlib&b=stdlib-128d&m=umap&color=__agreement")
            page.reload()
            page.wait_for_function("document.querySelector('#panelB .note').textContent.includes('agreement')",
                                   timeout=300_000)
            box = page.locator("#panelA .stage").bounding_box()
            cx, cy, r = box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.4, box["height"] / 14
            page.keyboard.down("Shift")
            page.mouse.move(cx - r, cy - r)
            page.mouse.down()
            for px, py in ((cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r)):
                page.mouse.move(px, py, steps=5)
            page.mouse.up()
            page.keyboard.up("Shift")
            page.screenshot(path=str(DOCS / "explorer-side-by-side.png"))
            page.goto(f"{url}/#lat=digits-vae&color=")
            page.reload()
            ready("Latent model digits-vae")
            first = page.evaluate("explorerState.data.A.labels.indexOf(1)")
            second = page.evaluate("explorerState.data.A.labels.indexOf(7)")
            page.evaluate(f"latentPicks = [{first}, {second}]; latentPath({first}, {second})")
            page.wait_for_function("document.querySelectorAll('#latentStrip img').length === 9", timeout=60_000)
            page.locator("#latentSlider").fill("4")
            page.screenshot(path=str(DOCS / "explorer-latent-path.png"))
            browser.close()
            print("console errors:", errors or "none")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/explorer-store")
