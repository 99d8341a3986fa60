"""Open the report in headless Chromium: a screenshot of the first screen, and a probe of what a reader sees.

``save_first_screen(index)`` is what the quickstart calls after ``write_report`` (it writes
``first-screen.png`` beside the page and returns None when no Chromium is installed). ``probe(index)`` loads
a copy of the page with a small script appended and reports the images, the broken ones, the console
messages and whether the verdict table and the headline figure lie inside the first viewport; the browser
test asserts on it. Chromium is found as ``$FM4NPP_CHROMIUM`` or on the PATH (Debian's ``chromium``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

VIEWPORT = (1400, 900)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--disable-extensions", "--allow-file-access-from-files")  # fmt: skip
FIRST_SCREEN = "first-screen.png"
# The ids the first screen must show (report_html.section_answer).
MUST_SEE = {"verdict": "#verdict", "headline": "#headline img"}
# Visibility is judged against the requested height (what --screenshot captures), not the dump-dom
# window's innerHeight, which is smaller; positions do not depend on it (the page uses no vh units).

_PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const out = {images: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
               width: window.innerWidth, height: window.innerHeight, visible: {}};
  for (const [k, sel] of Object.entries(%s)) {
    const el = document.querySelector(sel);
    const r = el ? el.getBoundingClientRect() : null;
    out.visible[k] = !!r && r.height > 0 && r.top >= 0 && r.bottom <= %d + 1;
  }
  const pre = document.createElement('pre'); pre.id = 'fm4npp-probe';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});</script></body>"""


def find_chromium() -> str | None:
    env = os.environ.get("FM4NPP_CHROMIUM")
    if env:
        return env if shutil.which(env) or Path(env).is_file() else None
    for name in CANDIDATES:
        if path := shutil.which(name):
            return path
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium, or set FM4NPP_CHROMIUM)")
    return subprocess.run([exe, *FLAGS, *args], capture_output=True, text=True, timeout=timeout, check=False)


def screenshot(index: Path, png: Path, size: tuple[int, int] = VIEWPORT, timeout: float = 120) -> Path:
    """PNG of the first ``size`` pixels of the page (the first screen)."""
    png = Path(png).resolve()
    png.unlink(missing_ok=True)
    out = _run([f"--window-size={size[0]},{size[1]}", f"--screenshot={png}", "--virtual-time-budget=5000",
                Path(index).resolve().as_uri()], timeout)  # fmt: skip
    if not png.is_file():
        raise RuntimeError(f"{index}: Chromium wrote no screenshot (exit {out.returncode}): {out.stderr[-400:]}")
    return png


def save_first_screen(index: Path, timeout: float = 120) -> Path | None:
    """Screenshot of the report's first screen as ``first-screen.png`` beside it; None without Chromium."""
    if find_chromium() is None:
        return None
    return screenshot(index, Path(index).parent / FIRST_SCREEN, VIEWPORT, timeout)


@dataclass
class Probe:
    images: int = 0
    broken: list[str] = field(default_factory=list)
    visible: dict[str, bool] = field(default_factory=dict)
    console: list[str] = field(default_factory=list)  # console messages and uncaught errors
    inner: tuple[int, int] = (0, 0)  # the window's layout viewport (Chromium's --dump-dom reserves ~90 px)


def probe(index: Path, size: tuple[int, int] = VIEWPORT, timeout: float = 120) -> Probe:
    """Load the page (a probe copy beside it, removed afterwards) and report what a reader sees."""
    index = Path(index).resolve()
    copy = index.with_name("_probe_" + index.name)
    text = index.read_text(encoding="utf-8")
    copy.write_text(text.replace("</body>", _PROBE % (json.dumps(MUST_SEE), size[1]), 1), encoding="utf-8")
    try:
        out = _run([f"--window-size={size[0]},{size[1]}", "--enable-logging=stderr", "--v=0",
                    "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()], timeout)  # fmt: skip
    finally:
        copy.unlink(missing_ok=True)
    found = re.search(r'<pre id="fm4npp-probe">(.*?)</pre>', out.stdout, re.DOTALL)
    if found is None:
        raise RuntimeError(f"{index}: the probe did not run (exit {out.returncode}): {out.stderr[-400:]}")
    raw = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    console = [ln.split("] ", 1)[-1] for ln in out.stderr.splitlines() if ":CONSOLE" in ln]
    return Probe(raw["images"], raw["broken"], raw["visible"], console, (raw["width"], raw["height"]))
