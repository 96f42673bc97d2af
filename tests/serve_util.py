"""Start ``seqgen serve`` in a subprocess on a free loopback port and wait until it answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from seqgen.cli import main; sys.argv = ['seqgen'] + sys.argv[1:]; main()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stderr(self) -> str:
        self.stop()
        return self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""


def start_server(target: Path, *args, code: str = CLI, env: dict | None = None, timeout: float = 120) -> Server:
    import httpx

    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", str(target), "--port", str(port), *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=full_env, cwd=target.parent)
    server = Server(proc, port)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {server.stderr()[-2000:]}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError("the server did not answer in time")
