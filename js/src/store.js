// The board's data in the browser: every job with what a click shows, kept in step with the
// kernel's snapshot (the `data` trait) and its batches of changes (custom messages).
// The formats are described in nbmake_ext/ui/board.py.

export const STATES = ["todo", "stale", "running", "done", "failed", "blocked"];
export const STATE_OF = { t: "todo", s: "stale", r: "running", d: "done", f: "failed", b: "blocked" };
const FINISHED = new Set(["done", "failed", "blocked"]);

export class Job {
  constructor(id, state, fn, parent, deps, x) {
    this.id = id;
    this.state = state;
    this.fn = fn;
    this.parent = parent; // id or null
    this.deps = deps; // ids
    this.x = x || {}; // extras: dur t0 t1 eng err tb out se by why ran part cpu pg rss att try opt
    this.children = [];
    this.run = false; // one of the jobs the run has to finish
    this.fin = false; // finished in this run
  }
}

export class JobStore {
  constructor() {
    this.jobs = new Map();
    this.run = { cmd: "", active: false, el: 0, exp: 0, fin: 0, summary: "", outcome: "" };
    this.runAt = performance.now(); // when `run.el` was true
    this.busy = ""; // the command this kernel runs (shared by every board)
    this.listeners = new Set();
    this._dependents = null;
    this.seq = 0;
    // Batches and snapshots are numbered by the kernel (`n`): a snapshot includes every
    // batch up to its number, so an older batch is dropped, whatever the order they came in.
    this.base = -1; // the number of the snapshot loaded
    this.later = []; // batches newer than it, applied again if an older snapshot comes late
    // What the user chose, shared by every view of this board: an output re-rendered at
    // the end of a run (update_display_data) opens as it was left.
    this.ui = { selected: null, tab: "jobs", only: "", message: null };
  }

  /** Tells the views that the user's choices (``ui``) changed. */
  touch() {
    this.emit({ type: "ui" });
  }

  on(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(event) {
    for (const fn of [...this.listeners]) {
      try {
        fn(event);
      } catch (err) {
        console.error("[nbmake board]", err);
      }
    }
  }

  /** A whole snapshot: replaces every job. */
  load(data, run) {
    const jobs = new Map();
    const ids = (data && data.ids) || [];
    const fns = data.fns || [];
    const st = data.st || "";
    const x = data.x || {};
    for (let i = 0; i < ids.length; i++) {
      const par = data.par[i];
      const job = new Job(ids[i], STATE_OF[st[i]] || "todo", fns[data.fn[i]] || "?",
        par >= 0 ? ids[par] : null, (data.deps[i] || []).map((k) => ids[k]), x[i] || x[String(i)]);
      jobs.set(job.id, job);
    }
    for (const k of data.run || []) if (ids[k] !== undefined) jobs.get(ids[k]).run = true;
    for (const k of data.fin || []) if (ids[k] !== undefined) jobs.get(ids[k]).fin = true;
    for (const job of jobs.values()) {
      const parent = job.parent && jobs.get(job.parent);
      if (parent) parent.children.push(job.id);
    }
    this.jobs = jobs;
    this._dependents = null;
    // The timeline's stored bars (indices into these ids), and the jobs that ran since.
    this.tl = data.tl || null;
    this.tlIds = ids;
    this.live = new Set();
    this.setRun(run);
    this.base = typeof data.n === "number" ? data.n : -1;
    const later = this.later.filter((d) => d.n > this.base);
    this.later = [];
    this.emit({ type: "reset" });
    for (const delta of later) this.apply(delta);
  }

  setRun(run) {
    if (!run) return;
    this.run = { ...this.run, ...run };
    this.runAt = performance.now();
  }

  /** One batch of changes from the kernel. */
  apply(delta) {
    if (typeof delta.n === "number") {
      if (delta.n <= this.base) return; // the snapshot already holds it
      this.later.push(delta);
      if (this.later.length > 100) this.later.shift();
    }
    const changed = [];
    const added = [];
    const gone = [];
    for (const id of delta.gone || []) {
      const job = this.jobs.get(id);
      if (!job) continue;
      this.jobs.delete(id);
      const parent = job.parent && this.jobs.get(job.parent);
      if (parent) parent.children = parent.children.filter((c) => c !== id);
      gone.push(job);
    }
    for (const [id, e] of Object.entries(delta.j || {})) {
      let job = this.jobs.get(id);
      if (!job) {
        job = new Job(id, STATE_OF[e.s] || "todo", e.f || "?", e.p || null, e.d || [], e.x);
        this.jobs.set(id, job);
        const parent = job.parent && this.jobs.get(job.parent);
        if (parent && !parent.children.includes(id)) parent.children.push(id);
        added.push(job);
      } else {
        changed.push(job);
      }
      if (e.s) job.state = STATE_OF[e.s] || job.state;
      if (e.s === "r") this.live.add(id); // ran in this board's life: its bars are live
      if (e.x) job.x = e.x;
      if (e.r) job.run = true;
      if (e.F) job.fin = true;
    }
    if (added.length || gone.length) this._dependents = null;
    this.setRun(delta.run);
    this.seq += 1;
    this.emit({ type: "delta", changed, added, gone });
  }

  get(id) {
    return this.jobs.get(id);
  }

  dependents(id) {
    if (!this._dependents) {
      const rev = new Map();
      for (const job of this.jobs.values()) {
        for (const d of job.deps) {
          let list = rev.get(d);
          if (!list) rev.set(d, (list = []));
          list.push(job.id);
        }
      }
      this._dependents = rev;
    }
    return this._dependents.get(id) || [];
  }

  counts() {
    const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const job of this.jobs.values()) counts[job.state] += 1;
    return counts;
  }

  /** The run's jobs by how they stand: finished ones by their state, running ones. */
  runCounts() {
    const out = { done: 0, failed: 0, blocked: 0, running: 0, total: 0 };
    for (const job of this.jobs.values()) {
      if (!job.run) continue;
      out.total += 1;
      if (job.fin && FINISHED.has(job.state)) out[job.state] += 1;
      else if (job.state === "running") out.running += 1;
    }
    return out;
  }

  /** Seconds since the run started, as of now (the kernel's clock, advanced locally). */
  elapsed() {
    const run = this.run;
    if (!run.t0) return 0;
    return run.el + (run.active ? (performance.now() - this.runAt) / 1000 : 0);
  }

  /** Reasons the job is not up to date: sent by the kernel, or what its state says. */
  why(job) {
    if (job.state === "done") return [];
    if (Array.isArray(job.x.why)) return job.x.why;
    switch (job.state) {
      case "running":
        return ["it is running now"];
      case "failed":
        return [`its last run failed${job.x.err ? ": " + job.x.err : ""}`];
      case "blocked":
        return [`blocked by ${job.x.by || "a failed dependency"}, which failed`];
      case "todo":
        return job.x.t1 || job.x.dur ? null : ["never ran"];
      default:
        return null; // stale: the kernel says why when asked
    }
  }

  /** The failed job at the root of a blocked one (following blocked links). */
  blocker(job) {
    let id = job.x.by;
    const seen = new Set();
    while (id && !seen.has(id)) {
      seen.add(id);
      const next = this.jobs.get(id);
      if (!next || next.state !== "blocked" || !next.x.by) break;
      id = next.x.by;
    }
    return id || null;
  }
}
