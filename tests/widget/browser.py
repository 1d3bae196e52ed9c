"""A real headless browser for the board's front end (Debian's chromium driven by
Playwright), and a page that runs the shipped board code against a fake widget model, so
the front end can be tested and measured without a Jupyter server.

Used by the browser tests and by ``bench/bench_widget.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import nbmake_ext.ui.widget as widget_module

STATIC = Path(widget_module.__file__).parent / "static"
CHROMIUM = os.environ.get("NBMAKE_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-dev-shm-usage"]


class NoBrowser(RuntimeError):
    pass


def chromium_path() -> str:
    """Debian's chromium; its absence is an error with the fix in it (the browser tests
    must fail, not skip, on a machine without it)."""
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not path:
        raise NoBrowser(f"chromium is not installed ({CHROMIUM} is missing): run "
                        "`apt-get update && apt-get install -y chromium` (as root), "
                        "as .ci/run does; never `playwright install`")
    return path


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


# -- the board against a fake model --------------------------------------------------------

_FAKE = r"""
<!doctype html><html><head><meta charset="utf-8"><title>job board</title>
<style>body { margin: 8px; font-family: sans-serif; } #out { width: 1100px; }</style>
</head><body><div id="out"></div>
<script type="module">
class Model {
  constructor(state) { this.state = state; this.handlers = new Map(); this.sent = []; }
  get(k) { return this.state[k]; }
  set(k, v) { this.state[k] = v; this.trigger("change:" + k); }
  on(ev, fn) { if (!this.handlers.has(ev)) this.handlers.set(ev, []); this.handlers.get(ev).push(fn); }
  off(ev, fn) {
    if (!ev) return this.handlers.clear();
    this.handlers.set(ev, (this.handlers.get(ev) || []).filter((f) => f !== fn));
  }
  trigger(ev, ...args) { for (const f of [...(this.handlers.get(ev) || [])]) f(...args); }
  send(msg) { this.sent.push(msg); }
  save_changes() {}
}
const blobUrl = (text) => URL.createObjectURL(new Blob([text], { type: "text/javascript" }));
window.boardSetup = async ({ loader, code, css, data, run, busy }) => {
  const t0 = performance.now();
  const codeModel = new Model({ code, css, version: "test", busy: busy || "" });
  const manager = { get_model: async (id) => codeModel };
  const model = new Model({ _code: "IPY_MODEL_code", _uid: "board-1", data, run });
  model.widget_manager = manager;
  const mod = (await import(blobUrl(loader))).default;
  window.boardForget = mod.initialize({ model }); // what anywidget calls when the model goes
  const el = document.getElementById("out");
  window.board = { model, codeModel, el };
  const t1 = performance.now();
  window.boardCleanup = await mod.render({ model, el });
  const t2 = performance.now();
  document.body.offsetHeight;
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  // loader import; board code import + snapshot + DOM; style, layout, paint of the first frame
  window.boardTimes = [t1 - t0, t2 - t1, performance.now() - t2];
};
window.boardDelta = (delta) => window.board.model.trigger("msg:custom", delta);
window.boardSet = (key, value) => window.board.model.set(key, value);
window.boardBusy = (value) => window.board.codeModel.set("busy", value);
window.boardReady = true;
</script></body></html>
"""


def static_files() -> dict[str, str]:
    return {name: (STATIC / name).read_text(encoding="utf-8")
            for name in ("loader.js", "board.js", "board.css")}


def open_fake_board(page: Any, data: dict, run: dict, busy: str = "") -> None:
    """Shows a board of ``data`` (Board.to_json) in ``page``, through the shipped loader."""
    page.set_content(_FAKE)
    page.wait_for_function("window.boardReady === true")
    files = static_files()
    page.evaluate("(a) => window.boardSetup(a)", {
        "loader": files["loader.js"], "code": files["board.js"], "css": files["board.css"],
        "data": json.loads(json.dumps(data)), "run": run, "busy": busy})
    page.wait_for_selector(".nbm-board")
