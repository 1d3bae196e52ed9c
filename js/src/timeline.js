// The timeline view (what compmake's gantt gave): one row per place that ran jobs (the
// kernel, each engine, each Dask worker) and one bar per job run, coloured by its outcome.
// Bars come from the timings the store keeps (the snapshot's `tl`, see
// nbmake_ext/ui/timeline.py), so the view works after a restart; jobs that run while the board
// is live get theirs from the changes the kernel sends (their t0, t1 and eng extras).
// Hovering a bar names the job and its times; clicking it opens its details.

import { clock, h, seconds, when } from "./dom.js";

const OUTCOME = { d: "done", f: "failed", a: "attempt", r: "running" };
const SESSION_GAP = 60; // seconds without any job running that separate two sessions
const STEPS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60,
  120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const LABEL_W = 150; // px: the column of place names

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** The place as the timeline names it: a Dask worker's address becomes "worker <address>". */
export function placeName(eng) {
  const name = eng || "kernel";
  return name.includes("://") && !name.startsWith("worker ") ? `worker ${name}` : name;
}

function placeOrder(a, b) {
  const rank = (p) => (p === "kernel" ? 0 : p.startsWith("engine ") ? 1 : p.startsWith("worker ") ? 2 : 3);
  return rank(a.name) - rank(b.name) || a.first - b.first || (a.name < b.name ? -1 : 1);
}

/** Every bar: the stored runs of the snapshot, with the live runs of jobs that ran since. */
export function collectBars(store, now) {
  const bars = [];
  // Jobs that ran while the board was live, and jobs running now (a snapshot taken while
  // they ran): their bars come from their extras, not from the stored runs.
  const live = new Set(store.live || []);
  for (const job of store.jobs.values()) if (job.state === "running" && job.x.t0) live.add(job.id);
  const tl = store.tl;
  const attempts = new Map(); // job id -> its attempts met so far
  if (tl && tl.j) {
    const ids = store.tlIds || [];
    let at = 0; // ms after tl.b: starts come as differences from the bar before
    for (let i = 0; i < tl.j.length; i++) {
      at += tl.s[i];
      const id = ids[tl.j[i]];
      if (id === undefined || live.has(id) || !store.get(id)) continue;
      const t0 = tl.b + at / 1000;
      const o = tl.o[i];
      const bar = { id, place: placeName(tl.pl[tl.p[i]]), t0, t1: t0 + tl.d[i] / 1000, o };
      if (o === "a") {
        // Failed attempts come in order of their start: the job's extras say why each failed.
        const n = (attempts.get(id) || 0) + 1;
        attempts.set(id, n);
        const a = (store.get(id).x.att || [])[n - 1];
        bar.n = (a && a.attempt) || n;
        bar.err = a && a.error;
      } else if (o === "f") {
        bar.err = store.get(id).x.err;
      }
      bars.push(bar);
    }
  }
  for (const id of live) {
    const job = store.get(id);
    if (!job) continue;
    const x = job.x;
    for (const a of x.att || []) {
      if (a.started > 0) {
        bars.push({ id, place: placeName(a.engine), t0: a.started, t1: Math.max(a.started, a.ended || a.started + (a.duration || 0)),
          o: "a", err: a.error, n: a.attempt });
      }
    }
    if (!x.t0) continue;
    const running = job.state === "running";
    if (!running && !x.t1 && x.dur === undefined) continue; // went back (an interrupt)
    const t1 = running ? Math.max(x.t0, now) : x.t1 || x.t0 + (x.dur || 0);
    bars.push({ id, place: placeName(x.eng), t0: x.t0, t1, o: running ? "r" : job.state === "failed" ? "f" : "d",
      err: x.err });
  }
  return bars;
}

/** The bars of the last session: the last stretch of time without a gap of SESSION_GAP. */
function lastSession(bars) {
  if (!bars.length) return bars;
  const sorted = [...bars].sort((a, b) => a.t0 - b.t0);
  let start = 0;
  let reach = sorted[0].t1;
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].t0 > reach + SESSION_GAP) start = i;
    reach = Math.max(reach, sorted[i].t1);
  }
  return sorted.slice(start);
}

function niceStep(span, ticks) {
  const raw = span / Math.max(1, ticks);
  return STEPS.find((s) => s >= raw) || STEPS[STEPS.length - 1];
}

function offset(value) {
  if (value === 0) return "0";
  if (value < 1) return `+${Math.round(value * 1000)} ms`;
  if (value < 60) return `+${+value.toFixed(1)} s`;
  return `+${clock(value)}`;
}

export class TimelineView {
  constructor(store, pick) {
    this.store = store;
    this.pick = pick;
    this.visible = false;
    this.mode = "latest"; // or "all"
    this.zoom = 1;
    this.selected = null;
    this.note = h("span.nbm-tnote");
    this.modeButton = h("button", { type: "button", "data-act": "timeline-all", title: "all the runs the store remembers, or the latest only",
      onclick: () => { this.mode = this.mode === "all" ? "latest" : "all"; this.draw(); } }, "all runs");
    this.zoomBox = h("span.nbm-zoom", null, this.modeButton,
      h("button", { type: "button", title: "narrower", onclick: () => this.setZoom(this.zoom / 1.5) }, "−"),
      h("button", { type: "button", title: "wider", onclick: () => this.setZoom(this.zoom * 1.5) }, "+"),
      h("button", { type: "button", title: "fit the width", onclick: () => this.setZoom(1) }, "fit"));
    this.inner = h("div.nbm-tinner");
    this.scroll = h("div.nbm-tscroll", null, this.inner);
    // The hover box lives in the page's body (fixed): an output area would clip it.
    this.tip = h("div.nbm-ttip", { "data-role": "timeline-tip", hidden: true });
    this.node = h("div.nbm-timeline", { "data-role": "timeline" },
      h("div.nbm-gbar", null, this.note, this.zoomBox), this.scroll);
    this.bars = []; // what is drawn, in the order of the bar elements
    this.inner.addEventListener("click", (e) => {
      const bar = e.target.closest(".nbm-tb");
      if (bar) this.pick(bar.dataset.jobId);
    });
    this.inner.addEventListener("mouseover", (e) => {
      const bar = e.target.closest(".nbm-tb");
      if (bar) this.showTip(bar, e);
      else this.tip.hidden = true;
    });
    this.inner.addEventListener("mouseleave", () => (this.tip.hidden = true));
    this._timer = null;
    this._drawnAt = 0;
  }

  show() {
    this.visible = true;
    this.draw();
  }

  hide() {
    this.visible = false;
    this.tip.hidden = true;
  }

  setZoom(z) {
    this.zoom = Math.min(200, Math.max(1, z));
    this.inner.style.width = `calc(${LABEL_W}px + (100% - ${LABEL_W}px) * ${this.zoom})`;
  }

  /** Changes came: drawn again soon (at most about twice a second), if shown. */
  update(event) {
    if (!this.visible) return;
    if (event.type === "reset") return this.draw();
    const timed = [...event.changed, ...event.added, ...event.gone].some((j) => j.x && (j.x.t0 || j.x.t1 || j.x.att));
    if (timed || event.gone.length) this.later();
  }

  /** A second passed: running bars grow. */
  tick() {
    if (this.visible && this.bars.some((b) => b.o === "r")) this.later();
  }

  later() {
    if (this._timer) return;
    // At most about twice a second, and never more than a fifth of the time (big boards).
    const wait = Math.max(0, Math.max(500, 5 * (this._cost || 0)) - (performance.now() - this._drawnAt));
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this.visible) this.draw();
    }, wait);
  }

  choose(all) {
    if (this.mode === "all") return all;
    const run = this.store.run;
    if (run.cmd && run.t0) {
      // A run's board: the runs of this command (and what still runs), if any.
      const mine = all.filter((b) => b.t1 >= run.t0 - 0.5 || b.o === "r");
      if (mine.length) return mine;
    }
    return lastSession(all);
  }

  draw() {
    this._drawnAt = performance.now();
    const now = Date.now() / 1000;
    const all = collectBars(this.store, now);
    const bars = this.choose(all).sort((a, b) => a.t0 - b.t0);
    this.bars = bars;
    this.modeButton.classList.toggle("nbm-on", this.mode === "all");
    this.modeButton.hidden = all.length === bars.length && this.mode !== "all";
    if (!bars.length) {
      this.note.textContent = "";
      this.inner.replaceChildren(h("div.nbm-empty", { text: "No job of this board has run yet: " +
        "the timeline shows the runs the store remembers, one row per place that ran them." }));
      return;
    }
    let t0 = Infinity;
    let t1 = -Infinity;
    const places = new Map();
    for (const b of bars) {
      t0 = Math.min(t0, b.t0);
      t1 = Math.max(t1, b.t1);
      let p = places.get(b.place);
      if (!p) places.set(b.place, (p = { name: b.place, first: b.t0, bars: [] }));
      p.bars.push(b);
    }
    const span = Math.max(t1 - t0, 0.001);
    const rows = [...places.values()].sort(placeOrder);
    const shown = bars.length < all.length ? ` (latest of ${all.length} runs: “all runs” shows every one)` : "";
    this.note.textContent = `${bars.length} run${bars.length === 1 ? "" : "s"} on ${rows.length} ` +
      `place${rows.length === 1 ? "" : "s"}, ${when(t0)} to ${when(t1).slice(11)} (${seconds(span)})${shown}`;

    const pct = (t) => ((100 * (t - t0)) / span).toFixed(3);
    const width = this.scroll.clientWidth || 800;
    const step = niceStep(span, Math.max(2, Math.floor(((width - LABEL_W) * this.zoom) / 90)));
    const ticks = [];
    for (let v = 0; v <= span + 1e-9; v += step) {
      ticks.push(h("span.nbm-ttick", { style: `left:${pct(t0 + v)}%`, text: offset(v) }));
    }
    const axis = h("div.nbm-trow.nbm-taxis", null, h("span.nbm-tlabel", { text: "" }),
      h("div.nbm-ttrack", null, ticks));
    const out = [axis];
    const order = [];
    for (const row of rows) {
      const track = h("div.nbm-ttrack");
      // One string per row: thousands of bars are parsed at once, not made one by one.
      const place = escape(row.name);
      const html = [];
      for (const b of row.bars) {
        html.push(`<div class="${b.id === this.selected ? "nbm-tb nbm-sel" : "nbm-tb"}" data-job-id="${escape(b.id)}" ` +
          `data-engine="${place}" data-outcome="${OUTCOME[b.o] || "done"}" data-bar="${order.length}" ` +
          `style="left:${pct(b.t0)}%;width:${((100 * (b.t1 - b.t0)) / span).toFixed(3)}%"></div>`);
        order.push(b);
      }
      track.innerHTML = html.join("");
      out.push(h("div.nbm-trow", { "data-place": row.name },
        h("span.nbm-tlabel", { text: row.name, title: `${row.name}: ${row.bars.length} run${row.bars.length === 1 ? "" : "s"}` }), track));
    }
    this.order = order;
    this.setZoom(this.zoom);
    this.inner.replaceChildren(...out);
    this._cost = performance.now() - this._drawnAt;
  }

  showTip(el, event) {
    const b = this.order && this.order[Number(el.dataset.bar)];
    if (!b) return;
    const job = this.store.get(b.id);
    const what = b.o === "a" ? (b.n ? `attempt ${b.n} failed` : "a failed attempt") : OUTCOME[b.o] || "done";
    const lines = [
      h("b", { text: b.id }),
      h("div", { text: `${what} · ${b.place}${job ? " · " + job.fn : ""}` }),
      h("div", { text: `started ${when(b.t0)}` }),
      h("div", { text: b.o === "r" ? `running for ${seconds(b.t1 - b.t0)}` : `ended ${when(b.t1)} · took ${seconds(b.t1 - b.t0)}` }),
    ];
    if (b.err && b.o !== "d") lines.push(h("div.nbm-err", { text: b.err }));
    this.tip.replaceChildren(...lines);
    if (!this.tip.isConnected) document.body.append(this.tip);
    this.tip.hidden = false;
    const width = this.tip.offsetWidth;
    const height = this.tip.offsetHeight;
    const x = Math.max(4, Math.min(event.clientX + 12, innerWidth - width - 8));
    const below = event.clientY + 16;
    const y = below + height < innerHeight - 4 ? below : Math.max(4, event.clientY - height - 8);
    this.tip.style.left = `${x}px`;
    this.tip.style.top = `${y}px`;
  }

  select(id) {
    this.selected = id;
    for (const el of this.inner.querySelectorAll(".nbm-tb.nbm-sel")) el.classList.remove("nbm-sel");
    if (!id) return;
    let first = null;
    for (const el of this.inner.querySelectorAll(".nbm-tb")) {
      if (el.dataset.jobId === id) {
        el.classList.add("nbm-sel");
        first ||= el;
      }
    }
    if (first && this.visible) first.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  dispose() {
    clearTimeout(this._timer);
    this.tip.remove();
  }
}
