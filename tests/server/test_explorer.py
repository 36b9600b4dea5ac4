"""The web explorer in a real headless Chromium (Debian's ``chromium`` driven by Playwright):
the page loads with no console errors, the map draws its points (canvas pixels), a typed
query lands with its true hits, clicking a point lists its neighbours, two spaces side by
side share one selection, the URL reopens the view, and a latent path decodes along a slider."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import latentspace as ls

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by .ci/run")

from ..conftest import build_tiny_st  # noqa: E402
from ..corpus import rows  # noqa: E402
from ..live_server import serve_in_thread, stop_all  # noqa: E402

N = 240


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_encoder, tiny_bert_other, digits):
    folder = tmp_path_factory.mktemp("explorer")
    data = [r for pkg in ("logging", "email", "asyncio", "unittest") for r in
            [r for r in rows() if r["package"] == pkg][: N // 4]]
    ids, docs = [f"p{i}" for i in range(len(data))], [r["text"] for r in data]
    metas = [{"package": r["package"]} for r in data]
    st = ls.open_store(folder / "s")
    st.create_collection("docs", encoder=tiny_encoder).add(ids, documents=docs, metadatas=metas)
    other = ls.SentenceTransformerEncoder(str(build_tiny_st(tiny_bert_other, folder / "other")), precision="fp32")
    st.create_collection("docs-other", encoder=other).add(ids, documents=docs, metadatas=metas)
    from latentspace.latent import LatentConfig, LatentModel, save_model, train

    x, y = digits
    vae = LatentModel(LatentConfig(name="vae", input_shape=(64,), latent_dim=4, hidden=(32,)), seed=0)
    train(vae, x[:300], epochs=3, seed=0)
    save_model(vae, folder / "vae")
    np.savez(folder / "digits.npz", x=x[:300], y=y[:300])
    url = serve_in_thread(folder / "s", latent={"vae": f"{folder / 'vae'}:{folder / 'digits.npz'}"})
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield url, st, browser, folder
        browser.close()
    stop_all(wait=True)
    st.close()


def open_page(browser, url, errors):
    page = browser.new_page(viewport={"width": 1400, "height": 860})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return page


def painted(page, selector: str, rgb: tuple[int, int, int] | None = None) -> int:
    """Pixels of a canvas that are not white (or, with ``rgb``, near that colour)."""
    return page.evaluate("""([sel, rgb]) => {
        const src = document.querySelector(sel), c = document.createElement('canvas');
        const map = [explorerState.maps.A, explorerState.maps.B].find(m => m.canvas === src || m.over === src);
        map.draw();  // read in the task that drew (the WebGL buffer is not preserved between frames)
        c.width = src.width; c.height = src.height;
        const ctx = c.getContext('2d'); ctx.drawImage(src, 0, 0);
        const d = ctx.getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i + 3] === 0) continue;
          if (rgb) { if (Math.abs(d[i] - rgb[0]) + Math.abs(d[i + 1] - rgb[1]) + Math.abs(d[i + 2] - rgb[2]) < 60) n++; }
          else if (d[i] + d[i + 1] + d[i + 2] < 720) n++;
        }
        return n; }""", [selector, list(rgb) if rgb else None])


def test_the_map_draws_a_query_lands_and_a_click_lists_neighbours(site):
    url, st, browser, folder = site
    errors: list[str] = []
    page = open_page(browser, f"{url}/#c=docs&color=package", errors)
    page.wait_for_function("document.getElementById('status').textContent.includes('records in')", timeout=30000)
    assert painted(page, "#panelA canvas.gl") > 400  # the points are on the canvas, not only in the DOM
    assert page.locator("#panelA .legend span i").count() == 4  # one colour per package
    col = st.get_collection("docs")
    # a typed query: its true top 10, in order, and a marker with lines on the map
    page.fill("#query", "log a message at warning level")
    page.press("#query", "Enter")
    page.wait_for_function("document.querySelectorAll('#hits li').length === 10", timeout=30000)
    shown = page.eval_on_selector_all("#hits li", "els => els.map(e => e.dataset.id)")
    assert shown == [h.id for h in col.search("log a message at warning level", k=10)]
    assert painted(page, "#panelA canvas.overlay", (217, 72, 15)) > 30
    assert "map recall" in page.text_content("#distortion")
    # hovering a point shows its document (fetched when first hovered)
    i = 17
    x, y = page.evaluate(f"explorerState.maps.A.pointOnScreen({i})")
    box = page.locator("#panelA .stage").bounding_box()
    pid = page.evaluate(f"explorerState.maps.A.ids[{i}]")
    page.mouse.move(box["x"] + x, box["y"] + y)
    doc = col.get(ids=[pid])[0].document
    try:
        page.wait_for_function(f"document.getElementById('tooltip').textContent.includes({doc[:40]!r})",
                               timeout=10000)
    except Exception:
        raise AssertionError(page.evaluate("[document.getElementById('tooltip').outerHTML]")[0] + " / " + doc[:40])
    # a click on a point: its true neighbours in the original space (not on the map)
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function(f"document.getElementById('resultsTitle').textContent.startsWith('Nearest to {pid}')",
                           timeout=30000)
    vec = col.get(ids=[pid], include_vectors=True)[0].vector
    expected = [h.id for h in col.search(vector=vec, space=col.spec, k=11) if h.id != pid][:10]
    assert page.eval_on_selector_all("#hits li", "els => els.map(e => e.dataset.id)") == expected
    assert f"sel={pid}" in page.evaluate("location.hash")
    page.screenshot(path=str(folder / "explorer-query.png"))
    assert errors == []


def test_two_spaces_side_by_side_share_a_selection_and_the_url_reopens_it(site):
    url, st, browser, folder = site
    errors: list[str] = []
    page = open_page(browser, f"{url}/#c=docs&b=docs-other&color=__agreement", errors)
    page.wait_for_function("document.querySelector('#panelB .note').textContent.includes('agreement')", timeout=30000)
    assert painted(page, "#panelB canvas.gl") > 400
    box = page.locator("#panelA .stage").bounding_box()
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"]) / 4
    page.keyboard.down("Shift")  # a lasso around the middle of the left map
    page.mouse.move(cx - r, cy - r)
    page.mouse.down()
    for px, py in ((cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r)):
        page.mouse.move(px, py, steps=4)
    page.mouse.up()
    page.keyboard.up("Shift")
    selected = page.evaluate("explorerState.state.sel")
    assert 0 < len(selected) < N
    # the same records light up on the right, whatever their places there
    right = page.evaluate("[...explorerState.maps.B.highlight].map(i => explorerState.maps.B.ids[i]).sort()")
    assert right == sorted(selected)
    assert page.text_content("#selCount") == f"({len(selected)})"
    with page.expect_download() as dl:  # the selection exports as a list of ids
        page.click("#exportSel")
    assert sorted(open(dl.value.path()).read().split()) == sorted(selected)
    link = page.evaluate("location.href")
    again = open_page(browser, link, errors)
    again.wait_for_function("document.querySelector('#panelB .note').textContent.includes('agreement')",
                            timeout=30000)
    assert sorted(again.evaluate("explorerState.state.sel")) == sorted(selected)
    assert again.evaluate("[explorerState.state.collection, explorerState.state.other]") == ["docs", "docs-other"]
    page.screenshot(path=str(folder / "explorer-side-by-side.png"))
    assert errors == []


def test_a_latent_path_is_drawn_and_decoded_along_a_slider(site):
    url, st, browser, folder = site
    errors: list[str] = []
    page = open_page(browser, f"{url}/#lat=vae", errors)
    page.wait_for_function("document.getElementById('status').textContent.includes('Latent model vae')",
                           timeout=30000)
    assert painted(page, "#panelA canvas.gl") > 400
    page.click("#latentRandom")
    page.wait_for_function("document.querySelectorAll('#latentStrip img').length === 9", timeout=30000)
    page.locator("#latentSlider").fill("6")
    assert page.evaluate("explorerState.maps.A.overlay.path.at") == 6
    assert page.get_attribute("#latentBig", "src").startswith("data:image/png;base64,")
    assert painted(page, "#panelA canvas.overlay", (217, 72, 15)) > 30
    assert errors == []
