// One view of a board: counts and legend, progress, the jobs and graph views, the details.

import { Details } from "./details.js";
import { clock, h, seconds } from "./dom.js";
import { GraphView } from "./graph.js";
import { Grid } from "./grid.js";
import { JobProgress } from "./runinfo.js";
import { STATES } from "./store.js";
import { TimelineView } from "./timeline.js";

const OUTCOME = { finished: "finished", failed: "finished with failures", interrupted: "interrupted",
  error: "stopped by an error" };

export class BoardView {
  constructor(el, store, link) {
    this.el = el;
    this.store = store;
    this.link = link; // {request(kind, id), busy()}
    this.tab = "jobs";
    this.selected = null;

    this.title = h("span.nbm-title");
    this.status = h("span.nbm-status");
    this.countEls = {};
    const chips = STATES.map((s) => {
      const n = h("b.nbm-n", { "data-count-state": s, text: "0" });
      this.countEls[s] = n;
      return h("button.nbm-chip", { type: "button", "data-filter": s, title: `show only ${s} jobs (click again for all)`,
        onclick: () => this.filter(s) }, h("i.nbm-sw.st-" + s), h("span", { text: s }), n);
    });
    this.counts = h("div.nbm-counts", null, chips);
    this.segs = Object.fromEntries(["done", "failed", "blocked", "running", "stale", "todo"].map((s) => [s, h("span.nbm-seg.st-" + s)]));
    this.bar = h("div.nbm-bar", null, Object.values(this.segs));
    this.ptext = h("span.nbm-ptext");
    this.search = h("input.nbm-search", { type: "search", placeholder: "find a job…", "aria-label": "find a job" });
    this.found = h("span.nbm-found");
    this.tabs = {
      jobs: h("button.nbm-tab", { type: "button", "data-tab": "jobs", onclick: () => this.show("jobs") }, "Jobs"),
      graph: h("button.nbm-tab", { type: "button", "data-tab": "graph", onclick: () => this.show("graph") }, "Graph"),
      timeline: h("button.nbm-tab", { type: "button", "data-tab": "timeline", onclick: () => this.show("timeline") }, "Timeline"),
    };
    this.problems = h("div.nbm-problems");
    this.grid = new Grid(store, (id) => this.pick(id));
    this.graph = new GraphView(store, (id) => this.pick(id));
    this.graph.node.hidden = true;
    this.timeline = new TimelineView(store, (id) => this.pick(id));
    this.timeline.node.hidden = true;
    this.jobProgress = new JobProgress(store, (id) => this.pick(id)); // running jobs' own bars
    this.details = new Details(store, {
      goto: (id) => this.pick(id),
      request: (kind, id) => this.link.request(kind, id),
      busy: () => this.link.busy(),
    });
    // Where the details open, kept while none is shown (in the jobs view): opening them
    // must not narrow the grid, which would lay out and paint every cell again (most of the
    // time of a click on a board of 10,000 jobs), and move the cell under the pointer.
    this.hint = h("div.nbm-dhint", { "data-role": "details-hint" },
      "Click a job for its details: why it runs, timings, logs, traceback.");
    this.root = h("div.nbm-board", null,
      h("div.nbm-head", null, this.title, this.status),
      this.counts,
      h("div.nbm-progress", null, this.bar, this.ptext),
      this.jobProgress.node,
      h("div.nbm-toolbar", null, this.tabs.jobs, this.tabs.graph, this.tabs.timeline, this.search, this.found),
      this.problems,
      h("div.nbm-body", null, h("div.nbm-main", null, this.grid.node, this.graph.node, this.timeline.node),
        this.details.node, this.hint));
    el.replaceChildren(this.root);

    this.problems.addEventListener("click", (e) => {
      const link = e.target.closest("[data-goto]");
      if (link) {
        e.preventDefault();
        this.pick(link.dataset.goto);
      }
    });
    let searchTimer = null;
    this.search.addEventListener("input", () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => this.find(false), 150);
    });
    this.search.addEventListener("keydown", (e) => {
      if (e.key === "Enter") this.find(true);
    });

    this.off = store.on((event) => (event.type === "ui" ? this.details.update(event) : this.update(event)));
    this.timer = setInterval(() => {
      if (!this.el.isConnected) return;
      if (this._stale) {
        this._stale = false;
        this.update({ type: "reset" });
      } else if (this.store.run.active) {
        this.head();
        this.timeline.tick();
      }
    }, 1000);
    this.grid.build();
    this.update({ type: "reset", skipGrid: true });
    // Open as the user left the board (in an earlier view of it).
    const ui = store.ui;
    if (ui.only) this.root.dataset.only = ui.only;
    this.show(ui.tab);
    if (ui.selected && store.get(ui.selected)) this.pick(ui.selected, false);
  }

  update(event) {
    // A view out of the page (a re-rendered output, a cell scrolled out of a windowed
    // notebook) catches up in one go when it is back.
    if (!this.el.isConnected && this._shown) {
      this._stale = true;
      return;
    }
    if (this.el.isConnected) this._shown = true;
    if (!event.skipGrid) this.grid.update(event);
    this.graph.update(event);
    this.timeline.update(event);
    this.jobProgress.update(event);
    this.details.update(event);
    this.head();
    this.tally();
  }

  head() {
    const run = this.store.run;
    const s = this.store;
    this.title.textContent = run.cmd ? `job board · ${run.cmd}` : "job board";
    const el = s.elapsed();
    let status = "";
    const rc = s.runCounts();
    const exp = Math.max(run.exp || 0, rc.total);
    const fin = run.fin || 0;
    if (run.cmd && run.active) {
      status = `running · ${clock(el)} elapsed`;
      if (fin > 0 && exp > fin) {
        // The pace so far: elapsed time per finished job, for the jobs still to finish.
        const left = (el * (exp - fin)) / fin;
        status += left < 1 ? " · nearly done" : ` · about ${left < 60 ? Math.round(left) + " s" : clock(left)} left`;
      }
    } else if (run.cmd) {
      status = `${OUTCOME[run.outcome] || "ended"} in ${seconds(el)}`;
      if (run.error) status += ` · ${run.error}`;
    }
    if (s.busy && s.busy !== run.cmd && !run.active) status += (status ? " · " : "") + `kernel busy (${s.busy})`;
    this.status.textContent = status;
    this.status.title = run.summary || "";
    this.root.dataset.run = run.active ? "active" : run.cmd ? "ended" : "none";

    // The bar: the run's jobs by outcome (a run), or every job by state (show).
    const counts = s.counts();
    let total;
    let parts;
    if (run.cmd && exp > 0) {
      total = exp;
      parts = { done: rc.done, failed: rc.failed, blocked: rc.blocked, running: rc.running, stale: 0, todo: 0 };
      this.ptext.textContent = `${fin} of ${exp} finished` + (run.summary && !run.active ? ` · ${run.summary}` : "");
    } else {
      total = s.jobs.size;
      parts = counts;
      this.ptext.textContent = run.cmd
        ? `nothing to run · ${run.summary || ""}`
        : `${counts.done} of ${total} done`;
    }
    for (const [state, seg] of Object.entries(this.segs)) {
      seg.style.width = total ? `${(100 * (parts[state] || 0)) / total}%` : "0";
    }
  }

  tally() {
    const counts = this.store.counts();
    for (const s of STATES) {
      const text = String(counts[s]);
      if (this.countEls[s].textContent !== text) this.countEls[s].textContent = text;
      this.countEls[s].parentNode.classList.toggle("nbm-zero", counts[s] === 0);
    }
    // Failed jobs, and how many jobs each blocks: the first thing to look at.
    const failed = [];
    let blocked = 0;
    for (const job of this.store.jobs.values()) {
      if (job.state === "failed") failed.push(job.id);
      else if (job.state === "blocked") blocked += 1;
    }
    const key = failed.join(",") + "|" + blocked;
    if (key === this._problemsKey) return;
    this._problemsKey = key;
    if (!failed.length && !blocked) return this.problems.replaceChildren();
    const shown = failed.slice(0, 12).map((id) => this.details.link(id));
    this.problems.replaceChildren(
      h("span.nbm-plabel", { text: failed.length ? `${failed.length} failed: ` : "" }), ...shown,
      failed.length > 12 ? ` and ${failed.length - 12} more` : "",
      blocked ? h("span.nbm-pblocked", { text: `${failed.length ? " · " : ""}${blocked} blocked` }) : "");
  }

  pick(id, scroll = true) {
    this.selected = id;
    this.store.ui.selected = id;
    this.grid.select(id, scroll);
    this.graph.select(id);
    this.timeline.select(id);
    if (id) this.details.show(id);
    else this.details.hide();
    this.side();
  }

  /** The hint holds the details' place in the jobs view while no job is chosen. */
  side() {
    this.hint.hidden = this.tab !== "jobs" || !this.details.node.hidden;
  }

  show(tab) {
    this.tab = tab;
    this.store.ui.tab = tab;
    for (const [name, button] of Object.entries(this.tabs)) button.classList.toggle("nbm-on", name === tab);
    this.grid.node.hidden = tab !== "jobs";
    this.graph.node.hidden = tab !== "graph";
    this.timeline.node.hidden = tab !== "timeline";
    this.side();
    if (tab === "timeline") this.timeline.show();
    else this.timeline.hide();
    if (tab === "graph") {
      this.graph.show(this.selected || undefined);
      if (this.selected) this.graph.select(this.selected);
    } else {
      this.graph.hide();
    }
  }

  filter(state) {
    const only = this.root.dataset.only === state ? "" : state;
    this.store.ui.only = only;
    if (only) this.root.dataset.only = only;
    else delete this.root.dataset.only;
  }

  find(go) {
    const q = this.search.value.trim().toLowerCase();
    if (!q) {
      this.grid.mark(null);
      this.found.textContent = "";
      return;
    }
    const hits = [];
    for (const job of this.store.jobs.values()) {
      if (job.id.toLowerCase().includes(q) || job.fn.toLowerCase().includes(q)) hits.push(job.id);
    }
    this.grid.mark(hits);
    this.found.textContent = `${hits.length} found`;
    if (go && hits.length) this.pick(hits[0]);
  }

  dispose() {
    this.off();
    clearInterval(this.timer);
    this.graph.dispose();
    this.timeline.dispose();
  }
}
