"""JupyterLab in a real browser: open chapter 00, run every cell, check outputs and a widget.

Starts JupyterLab on 127.0.0.1 with a token, drives Debian's Chromium headless through Playwright
(`executable_path`, no browser download), saves the notebook and checks it on disk: every code
cell ran, no error output. The screenshot goes to runs/browser/ (the run folder of this check).
Skipped where Chromium or Playwright is missing; `make system` installs Chromium on Debian.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"JupyterLab exited with {proc.returncode}:\n{log.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"JupyterLab did not answer {url} within {seconds} s")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium, or make system)")
def test_jupyterlab_runs_chapter_00(root, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(root / "notebooks" / "00_setup.ipynb", work)
    run_dir = root / "runs" / "browser"
    run_dir.mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), os.urandom(12).hex()
    env = {**os.environ, "LABKIT_ROOT": str(root), "LABKIT_METRICS_FILE": str(run_dir / "00_setup.metrics.json"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws")}
    log = open(tmp_path / "jupyterlab.log", "w+")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--allow-root",
           "--ServerApp.port_retries=0"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", proc, log)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"http://127.0.0.1:{port}/lab/tree/00_setup.ipynb?token={token}")
            n_cells = len(nbformat.read(work / "00_setup.ipynb", as_version=4).cells)
            page.wait_for_function(f"document.querySelectorAll('.jp-Notebook .jp-Cell').length >= {n_cells}")
            kernel_idle = page.locator(".jp-StatusBar-Widget", has_text="| Idle")
            kernel_idle.first.wait_for()
            # Run > Run All Cells, through the menu a reader would use.
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            deadline = time.monotonic() + 480
            time.sleep(2)
            while time.monotonic() < deadline:  # idle with no cell still queued ([*])
                queued = page.locator(".jp-InputPrompt", has_text="[*]").count()
                if kernel_idle.count() and not queued:
                    break
                time.sleep(1)
            else:
                raise AssertionError("the notebook did not finish within 8 minutes")
            page.keyboard.press("Control+s")
            time.sleep(2)
            news = page.get_by_role("button", name="No", exact=True)
            if news.count():  # JupyterLab's "notified about news?" toast would cover the page
                news.first.click()
            slider = page.locator(".jupyter-widgets .widget-slider, .jupyter-widgets.widget-slider").first
            assert slider.count(), "the Sampler's ipywidgets controls did not render"
            page.mouse.move(760, 500)
            for _ in range(40):  # scroll the notebook with the wheel, as a reader would, to the widget
                box = slider.bounding_box()
                if box is None or 150 <= box["y"] <= 700:
                    break
                page.mouse.wheel(0, max(-800, min(800, box["y"] - 400)))
                time.sleep(0.3)
            box = slider.bounding_box()
            assert box and box["width"] > 50 and 0 <= box["y"] <= 1000, f"the slider is not on screen: {box}"
            time.sleep(1)
            shot = run_dir / "jupyterlab_00_setup.png"
            page.screenshot(path=str(shot))
            browser.close()
        saved = nbformat.read(work / "00_setup.ipynb", as_version=4)
        code = [c for c in saved.cells if c.cell_type == "code"]
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert not errors, f"error output in the browser run: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        assert all(c.execution_count for c in code), "some code cells did not run"
        metrics = json.loads((run_dir / "00_setup.metrics.json").read_text())
        assert metrics["chat_answer_correct"] == 1
        assert shot.stat().st_size > 10_000
    finally:
        proc.terminate()  # the server we started, by its own PID
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
