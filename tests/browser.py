"""A headless Chromium driven over the DevTools protocol through a pipe (``--remote-debugging-pipe``:
JSON messages ended by a NUL byte on file descriptors 3 and 4), so that a test types into a page
and clicks it as a person would, with the standard library alone (no websocket client)."""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time


class Browser:
    def __init__(self, chromium: str, profile: str, timeout: float = 60.0):
        cmd_r, self._cmd_w = os.pipe()  # what Chromium reads: fd 3 in the child
        self._out_r, out_w = os.pipe()  # what Chromium writes: fd 4 in the child
        cmd_r, out_w = (_above(fd, 10) for fd in (cmd_r, out_w))  # so that neither is 3 or 4 already
        os.makedirs(profile, exist_ok=True)
        self.log = os.path.join(profile, "chromium.log")

        def fds():
            os.dup2(cmd_r, 3)
            os.dup2(out_w, 4)

        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            # 3 and 4 stay open past the closing of the other descriptors, which comes after preexec_fn
            pass_fds=(3, 4), preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=(err := open(self.log, "wb")))
        err.close()  # the child has its own copy
        os.close(cmd_r)
        os.close(out_w)
        self.timeout, self._next, self._buf, self.session = timeout, 0, b"", None

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for fd in (self._cmd_w, self._out_r):
            os.close(fd)

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        """One command; its result (RuntimeError on a protocol error). Events are skipped."""
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + self.timeout
        while True:
            while b"\0" not in self._buf:
                left = end - time.monotonic()
                if left <= 0 or not select.select([self._out_r], [], [], left)[0]:
                    raise TimeoutError(f"no answer to {method} from Chromium")
                chunk = os.read(self._out_r, 1 << 16)
                if not chunk:
                    with open(self.log, "rb") as f:
                        raise RuntimeError(f"Chromium closed the pipe: {f.read()[-1000:]!r}")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.send("Page.enable")
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete' && !!document.getElementById('prompt')")

    def js(self, expression: str):
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails'].get('text')}")
        return r["result"].get("value")

    def wait_for(self, expression: str, limit: float | None = None) -> None:
        end = time.monotonic() + (limit or self.timeout)
        while not self.js(expression):
            if time.monotonic() > end:
                raise TimeoutError(f"the page never had {expression}")
            time.sleep(0.05)

    def type(self, text: str) -> None:
        """Key presses into the focused element, one character at a time."""
        for ch in text:
            self.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": ch, "text": ch})
            self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": ch})

    def click(self, element_id: str) -> None:
        box = self.js(f"(() => {{ const r = document.getElementById({json.dumps(element_id)})"
                      ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 1})

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])


def _above(fd: int, low: int) -> int:
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD, low)
    os.close(fd)
    return new
