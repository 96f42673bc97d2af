"""The playground page at ``GET /``: served whole with nothing fetched from elsewhere, and in a real
headless Chromium a prompt streams its answer into the page (skipped where no Chromium is
installed; ``.ci/run`` installs Debian's)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from serve_util import start_server
from test_no_torch import music_bundle, text_bundle  # noqa: F401 - fixtures

httpx = pytest.importorskip("httpx", reason="httpx (dev extra) is not installed")
pytest.importorskip("starlette", reason="the serve extra is not installed")

pytestmark = pytest.mark.slow
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.fixture(scope="module")
def server(text_bundle):  # noqa: F811
    s = start_server(text_bundle)
    yield s
    s.stop()


def test_the_page_is_one_file_with_nothing_from_elsewhere(server):
    r = httpx.get(server.url + "/", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "/v1/completions" in page and 'id="prompt"' in page and "getReader" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page links outside"
    assert "<link" not in page and "import(" not in page and "@import" not in page


def test_a_music_run_gets_the_compose_button(music_bundle):  # noqa: F811
    s = start_server(music_bundle)
    try:
        page = httpx.get(s.url + "/", timeout=30).text
        assert "const MUSIC = true" in page and "/v1/compose" in page
    finally:
        s.stop()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_a_typed_prompt_streams_its_answer_into_the_page(server, tmp_path):
    """As a person uses the page: click the prompt box, type, click Generate; the answer streams in
    (the answer box changes many times before the status says done), then a screenshot."""
    from browser import Browser

    b = Browser(CHROMIUM, str(tmp_path / "profile"))
    try:
        b.open(server.url + "/")
        b.click("prompt")
        b.type("All")
        b.js("document.getElementById('max_tokens').select()")
        b.type("3000")
        assert b.js("document.getElementById('prompt').value") == "All"
        b.js("window.updates = []; new MutationObserver(() => window.updates.push("
             "[document.getElementById('out').textContent.length, document.getElementById('status').textContent]))"
             ".observe(document.getElementById('out'), {childList: true, characterData: true, subtree: true}); 1")
        b.click("go")
        b.wait_for("document.getElementById('status').textContent.startsWith('done')")
        out = b.js("document.getElementById('out').textContent")
        updates = b.js("window.updates")
        png = b.screenshot()
    finally:
        b.close()
    assert out.startswith("All") and len(out) == len("All") + 3000, out[:200]
    writing = [n for n, status in updates if status == "writing..."]
    assert len(set(writing)) > 2, updates  # text arrived in several pieces while it was being written
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    (tmp_path / "playground.png").write_bytes(png)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_a_prompt_streams_into_the_page_in_headless_chromium(server, tmp_path):
    """The page fills its prompt box from ?prompt= and starts; Chromium runs the script, the
    answer streams in through fetch, and the page's DOM then holds the prompt and the answer."""
    url = server.url + "/?prompt=All&run=1"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    out = re.search(r'<pre id="out">(.*?)</pre>', dom.stdout, re.DOTALL)
    status = re.search(r'<span id="status"[^>]*>(.*?)</span>', dom.stdout, re.DOTALL)
    assert out and status, dom.stdout[-2000:]
    assert out.group(1).startswith("All") and len(out.group(1)) > len("All") + 20, out.group(1)
    assert status.group(1).startswith("done"), status.group(1)
    shot = tmp_path / "playground.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1000,800", url], capture_output=True, check=False,
                   timeout=120)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
