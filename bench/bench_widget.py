"""How the job board's front end copes with many jobs, in a real headless browser.

The shipped board code (nbmake_ext/ui/static/) runs in Debian's chromium against a fake
widget model (tests/widget/browser.py), fed the real snapshot and delta formats
(nbmake_ext/ui/board.py). Measured inside the page with performance.now(), each time up
to the next frame (style, layout and paint forced):

- first render: the board of N jobs from its snapshot (code already loaded; the import of
  the code is reported on its own);
- update batch: one batch of B changed jobs (states and details), as the kernel sends at
  most every 100 ms during a run;
- new children: a batch that adds B dynamic children under running parents;
- final snapshot: the whole board replaced (what the end of a command does);
- click -> details: a click on a job's cell (scrolled into view first, untimed) until the
  frame that shows its details panel: the first click of a fresh board (the panel opens),
  then the median and max of clicks on jobs spread over every group;
- graph: the dagre layout and drawing of the 300 jobs around one job;
- timeline: a bar per job of the board (one run each, on 8 engines), drawn when its tab
  is opened.

Usage:  .venv/bin/python bench/bench_widget.py [--jobs 10000] [--batch 500] [--batches 20]
Needs chromium (apt-get install -y chromium) and playwright (the test extra).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "widget"))

from browser import browser, open_fake_board, static_files  # noqa: E402
from samples import big_board, run_json  # noqa: E402

from nbmake_ext.ui.board import LETTER  # noqa: E402

FRAME = """() => new Promise((resolve) => {
  document.body.offsetHeight;
  requestAnimationFrame(() => setTimeout(resolve, 0));
})"""

TIMED_DELTAS = """async (deltas) => {
  const times = [];
  for (const d of deltas) {
    const t0 = performance.now();
    window.boardDelta(d);
    document.body.offsetHeight;
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    times.push(performance.now() - t0);
  }
  return times;
}"""


CLICK = """async (id) => {
  const cell = document.querySelector(`.nbm-jobs [data-job-id="${id}"]`);
  cell.scrollIntoView({ block: "nearest" });
  for (let k = 0; k < 3; k++) await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const t0 = performance.now();
  cell.click();
  document.body.offsetHeight;
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const shown = document.querySelector('[data-role="details"] .nbm-jid')?.textContent;
  if (shown !== id) throw new Error(`details show ${shown}, not ${id}`);
  return performance.now() - t0;
}"""


def state_deltas(ids: list[str], batch: int, batches: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for n in range(batches):
        chosen = rng.sample(ids, min(batch, len(ids)))
        changes = {}
        for jid in chosen:
            state = rng.choice(["running", "done", "done", "failed", "blocked"])
            x = {"dur": rng.random(), "eng": f"engine-{rng.randrange(8)}",
                 "out": f"output of {jid}\n" * 3}
            if state == "failed":
                x.update(err="ValueError: bad", tb="Traceback...\n" * 10)
            if state == "blocked":
                x = {"by": rng.choice(ids)}
            changes[jid] = {"s": LETTER[state], "x": x}
        out.append({"t": "delta", "j": changes,
                    "run": {**run_json(exp=len(ids), fin=(n + 1) * batch), "now": 0}})
    return out


def child_deltas(parents: list[str], batch: int, batches: int) -> list[dict]:
    out = []
    for n in range(batches):
        changes = {}
        for k in range(batch):
            parent = parents[(n * batch + k) % len(parents)]
            changes[f"{parent}-new{n:03d}-{k:04d}"] = {
                "s": "r", "x": {"t0": 0}, "p": parent, "f": "part", "d": [], "r": 1}
        out.append({"t": "delta", "j": changes, "run": run_json()})
    return out


def summary(times: list[float]) -> str:
    return (f"median {statistics.median(times):7.1f} ms   p90 "
            f"{sorted(times)[int(0.9 * (len(times) - 1))]:7.1f} ms   max {max(times):7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="fresh boards: first renders to take the best of, first clicks")
    args = parser.parse_args()

    board = big_board(args.jobs)
    data = board.to_json()
    ids = data["ids"]
    parents = [j for j in ids if j.startswith("dyn-") and "-c" not in j]
    size = len(json.dumps(data))
    print(f"board: {len(ids)} jobs, {len(data['fns'])} functions, snapshot {size / 1e6:.2f} MB "
          f"JSON; board code {len(static_files()['board.js']) / 1024:.0f} KiB")

    with browser() as b:
        firsts = []
        for _ in range(args.repeat):
            page = b.new_page(viewport={"width": 1280, "height": 900})
            open_fake_board(page, data, run_json(exp=len(ids)))
            firsts.append(page.evaluate("() => window.boardTimes"))
            cells = page.evaluate("() => document.querySelectorAll('.nbm-c[data-job-id]').length")
            page.close()
        best = min(firsts, key=lambda t: t[1] + t[2])
        print(f"first render of {cells} job cells: {best[1] + best[2]:.0f} ms = code import, "
              f"snapshot and DOM {best[1]:.0f} ms + first frame {best[2]:.0f} ms (best of "
              f"{args.repeat}: {', '.join(f'{t[1] + t[2]:.0f}' for t in firsts)})")

        errors = []
        rng = random.Random(3)
        picks = [rng.choice([j for j in ids if j.startswith(f"{fn}-")])
                 for fn in sorted({j.rsplit("-", 1)[0] for j in ids if not j.startswith("dyn-")})]
        picks += rng.sample([j for j in ids if j.startswith("dyn-")], 3)
        rng.shuffle(picks)
        firsts, times = [], []
        for k in range(args.repeat):
            page = b.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            open_fake_board(page, data, run_json(exp=len(ids)))
            page.evaluate(FRAME)
            page.evaluate(FRAME)
            firsts.append(page.evaluate(CLICK, ids[3 + k]))
            times += [page.evaluate(CLICK, jid) for jid in picks]
            page.close()
        print(f"click -> details panel, first click (the panel opens): median "
              f"{statistics.median(firsts):7.1f} ms   of {', '.join(f'{t:.0f}' for t in firsts)}")
        print(f"click -> details panel, {len(times)} clicks on jobs of every group: {summary(times)}")

        page = b.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        open_fake_board(page, data, run_json(exp=len(ids)))
        page.evaluate(FRAME)
        render_only = page.evaluate("""async (data) => {
          const t0 = performance.now();
          window.boardSet("data", data);
          document.body.offsetHeight;
          await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
          return performance.now() - t0;
        }""", data)
        print(f"final snapshot (board rebuilt from {len(ids)} jobs):        {render_only:7.1f} ms")

        times = page.evaluate(TIMED_DELTAS, state_deltas(ids, args.batch, args.batches))
        print(f"update batch of {args.batch} changed jobs  ({args.batches} batches): "
              f"{summary(times)}")
        times = page.evaluate(TIMED_DELTAS, child_deltas(parents, max(1, args.batch // 5),
                                                         args.batches))
        print(f"batch adding {max(1, args.batch // 5)} dynamic children ({args.batches} batches): "
              f"{summary(times)}")

        page.click('[data-job-id="f3-00007"]')
        graph = page.evaluate("""async () => {
          const t0 = performance.now();
          document.querySelector('button[data-tab="graph"]').click();
          document.body.offsetHeight;
          await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
          return [performance.now() - t0, document.querySelectorAll('.nbm-node').length];
        }""")
        print(f"graph view around one job ({graph[1]} nodes, dagre):            {graph[0]:7.1f} ms")
        back = page.evaluate("""async () => {
          const t0 = performance.now();
          document.querySelector('button[data-tab="jobs"]').click();
          document.body.offsetHeight;
          await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
          return performance.now() - t0;
        }""")
        print(f"back to the jobs view (every cell laid out again):     {back:7.1f} ms")
        page.close()

        # The whole graph of a board at the limit the graph view draws in full.
        small = big_board(300, functions=6, dynamic=5, children=9).to_json()
        page = b.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        open_fake_board(page, small, run_json(exp=0, active=False))
        page.evaluate(FRAME)
        graph = page.evaluate("""async () => {
          const t0 = performance.now();
          document.querySelector('button[data-tab="graph"]').click();
          document.body.offsetHeight;
          await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
          return [performance.now() - t0, document.querySelectorAll('.nbm-node').length,
                  document.querySelectorAll('.nbm-edge').length];
        }""")
        print(f"graph view of a whole board ({graph[1]} nodes, {graph[2]} edges, dagre): "
              f"{graph[0]:7.1f} ms")
        page.close()

        # The timeline of the big board: one stored run per job, on 8 engines.
        timed = big_board(args.jobs)
        rng = random.Random(2)
        timed.bars = [(jid, f"engine {100 + i % 8}", 1e9 + i * 0.01, 1e9 + i * 0.01 + rng.random(),
                       "d" if rng.random() > 0.05 else "f") for i, jid in enumerate(timed.jobs)]
        tdata = timed.to_json()
        page = b.new_page(viewport={"width": 1280, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        open_fake_board(page, tdata, run_json(exp=0, active=False) | {"cmd": ""})
        page.evaluate(FRAME)
        tl = page.evaluate("""async () => {
          const t0 = performance.now();
          document.querySelector('button[data-tab="timeline"]').click();
          document.body.offsetHeight;
          await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
          return [performance.now() - t0, document.querySelectorAll('.nbm-tb').length];
        }""")
        print(f"timeline of {tl[1]} runs (8 engines; +{len(json.dumps(tdata['tl'])) / 1e3:.0f} kB "
              f"in the snapshot):           {tl[0]:7.1f} ms")
        if errors:
            print("page errors:", errors)
            sys.exit(1)


if __name__ == "__main__":
    main()
