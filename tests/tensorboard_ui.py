"""A real TensorBoard server and a headless Chromium, for the UI test and the screenshot script.

* ``tensorboard_server(logdir)``: starts ``python -m tensorboard.main`` on 127.0.0.1 with
  ``--port 0`` (the OS picks a free port; the server prints the URL it bound), waits until
  ``/data/runs`` answers, yields a ``Server`` with ``get_json``/``get_bytes``, and always
  terminates the process.
* ``chromium_page()``: headless Chromium driven over the DevTools protocol on a pipe
  (``--remote-debugging-pipe``: no port, no websocket library). TensorBoard's dashboards
  are Polymer elements whose content lives in shadow roots, which ``--dump-dom`` does not
  print; ``Page.text()`` walks the shadow roots and returns what is rendered.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")

# Leaf elements' text through every shadow root and same-origin iframe (the projector);
# styles and scripts left out.
_VISIBLE_TEXT = """(() => {
  const out = [];
  const walk = (n) => {
    if (n.shadowRoot) walk(n.shadowRoot);
    if (n.tagName === 'IFRAME' && n.contentDocument) walk(n.contentDocument.documentElement);
    for (const c of n.children || []) walk(c);
    const skip = ['STYLE', 'SCRIPT', 'TEMPLATE'].includes(n.tagName);
    if (n.nodeType === 1 && !n.children.length && !skip) {
      const t = (n.textContent || '').trim();
      if (t) out.push(t);
    }
  };
  walk(document.documentElement);
  return out.join('\\n');
})()"""


class Server:
    """A running TensorBoard: ``url``, ``logdir``, ``get_json(path, **query)``, ``get_bytes``."""

    def __init__(self, url: str, process: subprocess.Popen, logdir: str | Path) -> None:
        self.url, self.process, self.logdir = url.rstrip("/"), process, Path(logdir)

    def get_bytes(self, path: str, timeout: float = 20.0, **query: Any) -> bytes:
        address = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        with urllib.request.urlopen(address, timeout=timeout) as response:
            return response.read()

    def get_json(self, path: str, timeout: float = 20.0, **query: Any) -> Any:
        return json.loads(self.get_bytes(path, timeout=timeout, **query))


@contextmanager
def tensorboard_server(
    logdir: str | Path, startup_s: float = 45.0, extra_args: tuple[str, ...] = ()
) -> Iterator[Server]:
    """TensorBoard on ``logdir`` (``--samples_per_plugin images=200``), stopped on exit."""
    command = [
        sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
        "--host", "127.0.0.1", "--port", "0", "--samples_per_plugin", "images=200",
        "--reload_interval", "1", *extra_args,
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield _wait_until_serving(process, log, startup_s, logdir)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _wait_until_serving(
    process: subprocess.Popen, log: Any, startup_s: float, logdir: str | Path
) -> Server:
    """The server once it printed its URL and ``/data/runs`` lists a run."""
    server = None
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline and process.poll() is None:
        log.seek(0)
        found = re.search(rb"at (http://127\.0\.0\.1:\d+/)", log.read())
        if found:
            server = server or Server(found.group(1).decode(), process, logdir)
            try:
                if server.get_json("/data/runs", timeout=5):
                    return server
            except (OSError, ValueError):  # URLError is an OSError
                pass
        time.sleep(0.3)
    log.seek(0)
    raise RuntimeError(
        f"TensorBoard did not serve a run within {startup_s:.0f} s (exit code "
        f"{process.poll()}); its output:\n{log.read().decode(errors='replace')}"
    )


def find_chromium() -> str | None:
    """The Chromium executable (``$CHROMIUM`` first), or None."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if shutil.which(explicit) else None
    return next((shutil.which(n) for n in CHROMIUM_CANDIDATES if shutil.which(n)), None)


class Page:
    """One browser tab driven over the DevTools protocol pipe."""

    def __init__(self, send: Callable[..., dict], session: str) -> None:
        self._send, self._session = send, session

    def call(self, method: str, **params: Any) -> dict:
        return self._send(method, params, self._session)

    def goto(self, url: str) -> None:
        """Loads ``url`` afresh (a new fragment alone would not reload TensorBoard's app)."""
        self.call("Page.navigate", url="about:blank")
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def text(self) -> str:
        """The rendered text, shadow roots and iframes included."""
        return self.evaluate(_VISIBLE_TEXT) or ""

    def wait_for_text(self, needles: list[str], timeout: float = 30.0) -> str:
        """Polls ``text()`` until every needle is in it; returns the last text either way."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(n in text for n in needles):
                break
            time.sleep(0.5)
        return text

    def screenshot(self) -> bytes:
        """A PNG of the viewport."""
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])


def _above_9(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000, timeout: float = 30.0) -> Iterator[Page]:
    """A headless Chromium tab of ``width`` x ``height``; the browser is closed on exit."""
    executable = find_chromium()
    if executable is None:
        raise FileNotFoundError(
            "no Chromium found (looked for $CHROMIUM, " + ", ".join(CHROMIUM_CANDIDATES) + ")"
        )
    to_browser, from_us = os.pipe()
    to_us, from_browser = os.pipe()
    # Chromium's ends moved above fd 9, so that putting them on fds 3 and 4 clobbers neither.
    to_browser, from_browser = _above_9(to_browser), _above_9(from_browser)
    profile = tempfile.mkdtemp(prefix="cnnviz-chromium-")
    flags = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--hide-scrollbars", "--remote-debugging-pipe",
        f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank",
    ]  # fmt: skip
    # Chromium reads commands on fd 3 and answers on fd 4 (NUL-terminated JSON); a tiny
    # Python trampoline puts the pipe ends there (no preexec_fn, no shell fd syntax).
    trampoline = (
        "import os, sys; a, b = int(sys.argv[1]), int(sys.argv[2]); os.dup2(a, 3); "
        "os.dup2(b, 4); os.close(a); os.close(b); os.execv(sys.argv[3], sys.argv[3:])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", trampoline, str(to_browser), str(from_browser), executable, *flags],
        pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(to_browser)
    os.close(from_browser)
    state = {"id": 0, "buffer": b""}

    def send(method: str, params: dict | None = None, session: str | None = None) -> dict:
        state["id"] += 1
        message = {"id": state["id"], "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(from_us, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" not in state["buffer"]:
                if not select.select([to_us], [], [], max(deadline - time.monotonic(), 0))[0]:
                    raise TimeoutError(f"no answer to {method} within {timeout} s")
                chunk = os.read(to_us, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the pipe (exit code {process.poll()})")
                state["buffer"] += chunk
            raw, state["buffer"] = state["buffer"].split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == state["id"]:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(f"no answer to {method} within {timeout} s")

    try:
        target = send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(send, session)
        page.call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        yield page
    finally:
        with suppress(OSError):
            os.write(from_us, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        os.close(from_us)
        os.close(to_us)
        shutil.rmtree(profile, ignore_errors=True)
