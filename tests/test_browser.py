"""Real-browser tests (marker ``browser``): headless Chromium driven by Playwright.

1. ``i2l serve`` on 127.0.0.1: open the page, upload an image, read the LaTeX back from the page (the KaTeX
   CDN is blocked, as offline: the raw text must still show), and a bad upload shows an error.
2. JupyterLab on 127.0.0.1: open notebook 06, Run All, upload an image into the app's FileUpload, click
   Predict, read the LaTeX back from the page (and see it rendered by MathJax); then draw on the pad with the
   mouse and Predict again.

Debian's ``chromium`` is passed to Playwright as ``executable_path``: no browser is ever downloaded.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import formula_image, make_checkpoint

from i2l.infer import Predictor

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


PAGE = pytest.StashKey()


@pytest.fixture(autouse=True)
def screenshot_on_failure(request, tmp_path: Path):
    """When a browser test fails, save the page (PNG) and its outputs' text next to the test's tmp files."""
    yield
    page = request.node.stash.get(PAGE, None)
    report = getattr(request.node, "rep_call", None)
    if page is not None and not page.is_closed() and (report is None or report.failed):
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        texts = page.locator(".jp-OutputArea-output").all_text_contents()
        (tmp_path / "failure.txt").write_text("\n---\n".join(texts))
        print(f"browser state saved in {tmp_path}")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


#: The untrained test model writes any sequence of its tokens: with these, every sequence is valid LaTeX, so what
#: it writes always renders as math, whatever its random weights read.
PLAIN_FORMULAS = ["a + b = c", "x - y = 1 2", "k + 7 = z"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", formulas=PLAIN_FORMULAS)


def test_api_page(browser, checkpoint: Path, tmp_path: Path) -> None:
    image = tmp_path / "formula.png"
    formula_image("a+b").save(image)
    (tmp_path / "notes.png").write_text("not an image\n")
    expected = Predictor.from_checkpoint(checkpoint, device="cpu").predict_one(image, beam=1)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "i2l.cli", "serve", "--checkpoint", str(checkpoint),
                               "--port", str(port)], cwd=tmp_path)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", server)
        page = browser.new_page()
        page.route("**/cdn.jsdelivr.net/**", lambda route: route.abort())  # offline: no KaTeX
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
        page.select_option("#beam", "1")
        page.set_input_files("#file", str(tmp_path / "notes.png"))
        page.click("#predict")
        page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=20_000)
        assert "not an image" in page.text_content("#error")
        page.set_input_files("#file", str(image))
        page.click("#predict")
        page.wait_for_function("document.getElementById('latex').value.length > 0", timeout=20_000)
        assert page.input_value("#latex") == expected.latex
        assert page.text_content("#rendered") == expected.latex  # the raw text, KaTeX being unreachable
        assert page.locator("#candidates tr").count() == 1
        assert page.text_content("#error") == ""
        page.close()
    finally:
        stop(server)


@pytest.mark.slow
def test_notebook_06_in_jupyterlab(browser, tmp_path: Path, request) -> None:
    from i2l.data.synth import make_dataset

    home = tmp_path / "home"  # I2L_HOME: the notebook finds its data here; its model is the shipped one
    make_dataset(home / "data" / "synth-smoke", n=40, seed=0)
    (home / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / "06_interactive_inference.ipynb", home / "notebooks")
    image = tmp_path / "upload.png"
    formula_image("y-2", size=34).save(image)
    expected = Predictor.pretrained(device="cpu").predict_one(image)  # what the notebook's default model reads

    # user settings: every cell stays in the DOM (no windowing, so the app's widgets can be found), no news
    settings = tmp_path / "settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    (settings / "apputils-extension").mkdir()
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port, token = free_port(), "i2l-browser-test"
    env = {**os.environ, "I2L_SMOKE": "1", "I2L_HOME": str(home), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings")}
    lab = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={home}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=None"],
        env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/api/status?token={token}", lab)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        request.node.stash[PAGE] = page  # for the screenshot on failure
        page.goto(f"{url}/lab/tree/notebooks/06_interactive_inference.ipynb?token={token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        idle = "[...document.querySelectorAll('.jp-StatusBar-TextItem')].some((e) => e.textContent.includes('| Idle'))"
        page.wait_for_function(f"() => document.querySelector('.jp-Dialog') || {idle}", timeout=60_000)
        if page.locator(".jp-Dialog").count():  # "Select Kernel" in a fresh JupyterLab: take the default
            page.locator(".jp-Dialog .jp-mod-accept").click()
        page.wait_for_function(f"() => {idle}", timeout=60_000)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        # cells out of view are not "visible" to Playwright (content-visibility): test the text in the DOM
        page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output')]"
                               ".some((e) => e.textContent.includes('drawing:'))", timeout=90_000)

        # ipywidgets 8 keeps the FileUpload's <input type=file> out of the DOM: answer the file chooser
        with page.expect_file_chooser() as chooser:
            page.locator(".jp-Notebook button.widget-upload").first.click()
        chooser.value.set_files(str(image))
        page.locator(".jp-Notebook button", has_text="Predict").first.click()
        page.wait_for_function("(score) => [...document.querySelectorAll('.jp-Notebook .widget-html')]"
                               ".some((e) => e.textContent.includes(score))",
                               arg=f"score {expected.score:.3f}", timeout=30_000)
        textarea = page.locator(".jp-Notebook .widget-textarea textarea").first
        assert textarea.input_value() == expected.latex
        if expected.latex:  # an untrained model may stop at once: nothing to render then
            assert page.locator(".jp-Notebook .widget-htmlmath mjx-container").count() > 0  # rendered as math

        # draw on the pad with the mouse: the strokes reach Python, the app switches to the drawing
        canvas = page.locator(".jp-Notebook canvas.i2l-drawpad").first
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        for (x0, y0), (x1, y1) in [((40, 40), (110, 120)), ((110, 40), (40, 120)), ((150, 80), (210, 80))]:
            page.mouse.move(box["x"] + x0, box["y"] + y0)
            page.mouse.down()
            page.mouse.move(box["x"] + x1, box["y"] + y1, steps=6)
            page.mouse.up()
        page.locator(".jp-Notebook button", has_text="Predict").first.click()
        page.wait_for_function("(score) => [...document.querySelectorAll('.jp-Notebook .widget-html')]"
                               ".some((e) => e.textContent.includes('tokens, score') && !e.textContent.includes(score))",
                               arg=f"score {expected.score:.3f}", timeout=30_000)
        assert page.locator(".jp-Notebook .widget-toggle-buttons button.mod-active").first.inner_text() == "drawing"
        page.close()
    finally:
        stop(lab)
