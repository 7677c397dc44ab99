"""The demo page in a real browser: `mmfusion demo` + headless Chromium.

Starts the app with the CLI on a free localhost port, drives Debian's
`chromium` through the DevTools protocol (a screenshot taken with
`--screenshot` alone is often blank: the page arrives over a websocket),
waits until the prediction and every plot are on the page, and saves a
screenshot. With `MMFUSION_SAVE_SCREENSHOT=1` it is also copied to
`docs/app_screenshot.png`.

Runs on the JAX backend only: it tests the page, not the backend.
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MARKER = "Predicted class:"
MODEL = "avdigits_mbaf"  # image + audio: every kind of plot
PLOTS = 7  # probabilities, image, audio, read weights, attention, memory, PCA

pytestmark = [
    pytest.mark.skipif(
        keras.config.backend() != "jax",
        reason="browser test runs once, on the JAX backend (it tests the page)",
    ),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Chromium is not installed (Debian: apt-get install -y chromium)",
    ),
]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout, what, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited ({process.returncode})")
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"Timed out after {timeout} s waiting for {what}")


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


def _stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.fixture
def server(models_root, tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mmfusion_keras.cli", "demo", "--port", str(port),
         "--backend", "jax"],
        env={**os.environ, "MMFUSION_MODELS_DIR": str(models_root)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as a whole
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: _get(url + "/_stcore/health"), 120, "the app server", process)
        yield url
    finally:
        _stop(process)
        log.close()


class DevTools:
    """A minimal Chrome DevTools protocol client over one websocket."""

    def __init__(self, websocket_url):
        from websockets.sync.client import connect

        self.socket = connect(websocket_url, max_size=None, open_timeout=30)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.socket.send(
            json.dumps({"id": self.next_id, "method": method, "params": params})
        )
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression):
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True
        )
        return result["result"].get("value")

    def close(self):
        self.socket.close()


@pytest.fixture
def browser(tmp_path):
    profile = tmp_path / "chromium-profile"
    process = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--remote-debugging-address=127.0.0.1", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        active = profile / "DevToolsActivePort"
        _wait(lambda: active.is_file() and active.read_text().strip(), 60,
              "Chromium's DevTools port", process)  # fmt: skip
        port = active.read_text().split()[0]
        targets = _wait(
            lambda: json.loads(_get(f"http://127.0.0.1:{port}/json/list") or "[]"),
            30,
            "a Chromium page",
        )
        page = next(t for t in targets if t["type"] == "page")
        devtools = DevTools(page["webSocketDebuggerUrl"])
        yield devtools
        devtools.close()
    finally:
        _stop(process)


def test_page_renders_prediction_and_plots(server, browser, tmp_path):
    from PIL import Image

    browser.call(
        "Emulation.setDeviceMetricsOverride",
        width=1500,
        height=2600,
        deviceScaleFactor=1,
        mobile=False,
    )
    browser.call("Page.enable")
    browser.call("Page.navigate", url=f"{server}/?model={MODEL}")
    text = "document.body ? document.body.innerText : ''"
    plots = (
        "Array.from(document.querySelectorAll('img')).filter("
        "i => i.complete && i.naturalWidth >= 200).length"
    )
    running = "document.querySelector('[data-testid=\"stStatusWidget\"]') !== null"

    def ready():
        return (
            MARKER in (browser.evaluate(text) or "")
            and (browser.evaluate(plots) or 0) >= PLOTS
            and not browser.evaluate(running)
        )

    try:
        _wait(ready, 240, f"{MARKER!r} and {PLOTS} plots on the page")
    except AssertionError as e:
        found = browser.evaluate(plots)
        tail = (browser.evaluate(text) or "")[-600:]
        raise AssertionError(f"{e}; {found} plots; page text ends with: {tail}") from e
    time.sleep(1.0)  # let the last images paint
    page_text = browser.evaluate(text)
    assert "runs on jax" in page_text.replace("`", "")
    assert "3. Inside the model" in page_text
    assert f"Model {MODEL} (MBAF memory fusion)" in page_text
    shot = browser.call("Page.captureScreenshot", format="png")
    path = tmp_path / "app_screenshot.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    image = np.asarray(Image.open(path).convert("L"), "float32")
    assert image.shape == (2600, 1500)
    assert image.std() > 20, "the screenshot is (nearly) blank"
    assert len(np.unique(image)) > 100, "the screenshot has too few shades"
    if os.environ.get("MMFUSION_SAVE_SCREENSHOT") == "1":
        target = REPO / "docs" / "app_screenshot.png"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, target)
