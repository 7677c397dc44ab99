"""Drive the demo in headless Chromium over the DevTools protocol.

Used by `tests/apps/test_browser.py` and `benchmarks/app_latency_browser.py`:
start `mmfusion demo` on a free port (`start_server`), start Debian's
`chromium` with a DevTools port (`start_chromium`), and talk to the page
with `DevTools` (evaluate JavaScript, upload files with
`DOM.setFileInputFiles`, take screenshots). A screenshot taken with
`--screenshot` alone is often blank: the page arrives over a websocket.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# JavaScript expressions read by `Page`.
TEXT = "document.body ? document.body.innerText : ''"
RUNNING = "document.querySelector('[data-testid=\"stStatusWidget\"]') !== null"
# Vega-Lite charts drawn (a canvas or SVG with marks inside the chart element).
CHARTS_DRAWN = (
    "Array.from(document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]'))"
    ".filter(e => e.querySelector('canvas, svg.marks')).length"
)
STALE = "Array.from(document.querySelectorAll('[data-stale=\"true\"]')).length"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(predicate, timeout, what, process=None, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited ({process.returncode})")
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout} s waiting for {what}")


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


def stop(process):
    """Stops a process started here (its own process group) and its children."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@contextlib.contextmanager
def start_server(backend, models_dir=None, log_path=None, timeout=180):
    """`mmfusion demo` on a free localhost port; yields its URL."""
    port = free_port()
    env = dict(os.environ)
    if models_dir:
        env["MMFUSION_MODELS_DIR"] = str(models_dir)
    log = open(log_path or os.devnull, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mmfusion_keras.cli", "demo", "--port", str(port),
         "--backend", backend],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped as a whole
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait(lambda: http_get(url + "/_stcore/health"), timeout, "the app server",
             process)  # fmt: skip
        yield url
    finally:
        stop(process)
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
            message = json.loads(self.socket.recv(timeout=120))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression):
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True
        )
        return result["result"].get("value")

    def text(self):
        return self.evaluate(TEXT) or ""

    def upload(self, index, path):
        """Puts the file at `path` into the page's `index`-th file input."""
        root = self.call("DOM.getDocument", depth=-1, pierce=True)["root"]["nodeId"]
        nodes = self.call(
            "DOM.querySelectorAll", nodeId=root, selector="input[type=file]"
        )["nodeIds"]
        if index >= len(nodes):
            raise AssertionError(
                f"Expected at least {index + 1} file inputs, found {len(nodes)}"
            )
        self.call(
            "DOM.setFileInputFiles", nodeId=nodes[index], files=[os.path.abspath(path)]
        )

    def idle(self):
        """No rerun running and no stale (greyed) element left."""
        return not self.evaluate(RUNNING) and not self.evaluate(STALE)

    def close(self):
        self.socket.close()


@contextlib.contextmanager
def start_chromium(width=1500, height=2600):
    """Headless Chromium with a fresh profile; yields a `DevTools` on its page."""
    if CHROMIUM is None:
        raise RuntimeError(
            "Chromium is not installed (Debian: apt-get install chromium)"
        )
    profile = tempfile.mkdtemp(prefix="mmfusion-chromium-")
    process = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--remote-debugging-address=127.0.0.1", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    devtools = None
    try:
        active = os.path.join(profile, "DevToolsActivePort")

        wait(lambda: os.path.isfile(active) and os.path.getsize(active) > 0, 60,
             "Chromium's DevTools port", process)  # fmt: skip
        with open(active) as f:
            number = f.read().split()[0]
        targets = wait(
            lambda: json.loads(
                http_get(f"http://127.0.0.1:{number}/json/list") or "[]"
            ),
            30,
            "a Chromium page",
        )
        page = next(t for t in targets if t["type"] == "page")
        devtools = DevTools(page["webSocketDebuggerUrl"])
        devtools.call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        devtools.call("Page.enable")
        devtools.call("DOM.enable")
        yield devtools
    finally:
        if devtools is not None:
            devtools.close()
        stop(process)
        shutil.rmtree(profile, ignore_errors=True)
