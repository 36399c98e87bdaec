"""Headless Chromium for the page tests, driven over the DevTools protocol on a pipe (no extra packages).

Chromium started with --remote-debugging-pipe reads NUL-terminated JSON commands on fd 3 and writes replies
and events on fd 4. `Browser.open(path)` loads a local file and collects what a person would see go wrong:
console errors, uncaught exceptions and any request that leaves the machine (http, https, ws).
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """$CHROMIUM, else the first Chromium-like executable on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    pass


@dataclass
class Tab:
    """One loaded page: its DevTools session and what went wrong while it loaded and ran."""

    browser: "Browser"
    session: str
    errors: list[str] = field(default_factory=list)
    remote_requests: list[str] = field(default_factory=list)

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """Value of a JavaScript expression (promises awaited); a thrown exception is a BrowserError."""
        reply = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": True}, self.session, timeout)
        if "exceptionDetails" in reply:
            raise BrowserError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        """Poll until the expression is truthy; its value."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise BrowserError(f"{expression!r} still false after {timeout:.0f} s; page errors: {self.errors}")

    def screenshot(self, clip: dict[str, float] | None = None, full_page: bool = False) -> bytes:
        """PNG bytes of the viewport, of `clip` (CSS pixels) or of the whole page."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
        elif full_page:
            size = self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        return base64.b64decode(self.browser.call("Page.captureScreenshot", params, self.session)["data"])


class Browser:
    """A headless Chromium process; use as a context manager."""

    def __init__(self, executable: str, width: int = 1280, height: int = 900):
        self.width, self.height = width, height
        self._profile = tempfile.mkdtemp(prefix="l2m-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        flags = ["--headless", "--no-sandbox", "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
                 "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                 "--hide-scrollbars", f"--window-size={width},{height}",
                 # WebGL on a machine without a GPU: the software rasteriser
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
        self._log = open(Path(self._profile) / "chromium.log", "wb")

        def pipe_fds() -> None:  # in the child: our pipe ends become fds 3 (commands in) and 4 (replies out)
            high_r, high_w = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)  # dup2 leaves them inheritable; Python's own fds are not (PEP 446)
            os.dup2(high_w, 4)

        self.process = subprocess.Popen([executable, *flags, "about:blank"], preexec_fn=pipe_fds, close_fds=False,
                                        stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._tabs: dict[str, Tab] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.version = self.call("Browser.getVersion", timeout=60)["product"]

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                with self._cond:
                    self._cond.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._cond:
                        self._replies[message["id"]] = message
                        self._cond.notify_all()
                else:
                    self._on_event(message)

    def _on_event(self, message: dict) -> None:
        tab = self._tabs.get(message.get("sessionId", ""))
        if tab is None:
            return
        method, params = message["method"], message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            tab.errors.append(f"uncaught: {details.get('exception', {}).get('description') or details['text']}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            tab.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description", "")))
                                                           for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            tab.errors.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(("file:", "data:", "blob:", "about:")):
                tab.remote_requests.append(url)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        """Send one DevTools command and wait for its reply; an error reply is a BrowserError."""
        with self._cond:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        end = time.monotonic() + timeout
        with self._cond:
            while ident not in self._replies:
                left = end - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise BrowserError(f"no reply to {method} within {timeout:.0f} s "
                                       f"(chromium exit code {self.process.poll()})")
                self._cond.wait(min(left, 0.5))
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, path: Path, timeout: float = 60.0) -> Tab:
        """Load a local file in a new tab and wait for its load event."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        tab = Tab(self, session)
        self._tabs[session] = tab
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                         "deviceScaleFactor": 1, "mobile": False}, session)
        self.call("Page.navigate", {"url": Path(path).resolve().as_uri()}, session)
        tab.wait_for("document.readyState === 'complete'", timeout)
        return tab

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.call("Browser.close", timeout=10)
            except BrowserError:
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        os.close(self._to_child)
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """python tests/browser.py PAGE.html OUT.png [WIDTH HEIGHT]: a screenshot of a page once its charts are drawn."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 4):
        raise SystemExit(main.__doc__)
    exe = find_chromium()
    if exe is None:
        raise SystemExit("Chromium not found: apt-get install chromium, or set $CHROMIUM")
    width, height = (int(args[2]), int(args[3])) if len(args) == 4 else (1280, 900)
    with Browser(exe, width, height) as browser:
        tab = browser.open(Path(args[0]))
        tab.wait_for("window.pageReady === true")
        time.sleep(0.5)
        Path(args[1]).write_bytes(tab.screenshot())
        for error in tab.errors + [f"remote request: {u}" for u in tab.remote_requests]:
            print(error, file=sys.stderr)
    return 1 if tab.errors or tab.remote_requests else 0


if __name__ == "__main__":
    raise SystemExit(main())
