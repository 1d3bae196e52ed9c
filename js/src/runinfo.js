// What a run of a job adds to its details and to the board: how far a running job is (what
// it reports with nbmake_ext.progress), its options (timeout, retries, resources), its peak
// memory and its failed attempts (job_retries). Also the strip of running jobs' progress bars.

import { h, seconds, when } from "./dom.js";

/** 3, 2.5, 1.23e+6: a reported number as short text (as nbmake_ext/shared/progress.py). */
export function number(v) {
  if (typeof v !== "number" || !Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  return String(+v.toPrecision(3));
}

export function bytes(n) {
  if (!n && n !== 0) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${i ? v.toFixed(v < 10 ? 1 : 0) : v} ${units[i]}`;
}

/** [done, total, message] -> {done, total, fraction, text, message} */
export function progressOf(job) {
  const pg = job && job.state === "running" ? job.x.pg : null;
  if (!pg) return null;
  const [done, total, message] = pg;
  const fraction = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  return { done, total, fraction, text: `${number(done)}/${number(total)}`, message: message || "" };
}

/** A small bar and the `done/total` text (the element SPEC 6 names: data-role="progress"). */
export function progressBar(job, p) {
  return [
    h("span.nbm-jpbar", null, h("span.nbm-jpfill", { style: `width:${(100 * p.fraction).toFixed(1)}%` })),
    h("span.nbm-jptext", { "data-role": "progress", "data-job-id": job.id, title: p.message || null, text: p.text }),
    h("span.nbm-jpmsg", { text: p.message }),
  ];
}

/** A time limit as it was likely written: 90 s, 10 min, 2 h. */
function limit(v) {
  if (v >= 3600 && v % 3600 === 0) return `${v / 3600} h`;
  if (v >= 120 && v % 60 === 0) return `${v / 60} min`;
  return v >= 120 ? seconds(v) : `${number(v)} s`;
}

export function optionsText(opt) {
  if (!opt) return "";
  const parts = [];
  if (opt.timeout !== undefined) parts.push(`timeout ${limit(opt.timeout)}`);
  if (opt.retries) parts.push(`retries ${opt.retries}`);
  if (opt.resources) {
    const res = Object.entries(opt.resources).map(([k, v]) => `${k} ${k === "mem" ? bytes(v) : number(v)}`);
    if (res.length) parts.push(`resources: ${res.join(", ")}`);
  }
  return parts.join(" · ");
}

/** A job's files as the details panel lists them: each path, with what became of it. */
function filesText(files) {
  return files.map(([path, status]) => (status ? `${path} (${status})` : path)).join(", ");
}

/** Rows for the details panel's fields: progress, attempt, options, files, command, peak
 * memory. */
export function runRows(job, row) {
  const x = job.x;
  const p = progressOf(job);
  if (p) row("progress", h("span.nbm-jprow", null, progressBar(job, p)));
  if (job.state === "running" && x.try > 1) {
    const of = x.opt && x.opt.retries ? ` of ${x.opt.retries + 1}` : "";
    row("attempt", `${x.try}${of} (the earlier ones failed)`);
  }
  if (x.opt) row("options", optionsText(x.opt));
  const files = x.files;
  if (files && files.in && files.in.length) row("input files", filesText(files.in));
  if (files && files.out && files.out.length) row("output files", filesText(files.out));
  if (x.cmd) row("command", x.cmd);
  if (x.rss) row("peak memory", `${bytes(x.rss)}${job.state === "running" ? " (last run)" : ""}`);
}

/** The failed attempts before the last run (job_retries), each with its error. */
export function attemptsBlock(job) {
  const att = job.x.att;
  if (!att || !att.length) return null;
  const items = att.map((a, i) => {
    const head = [`attempt ${a.attempt || i + 1}`];
    if (a.started) head.push(`started ${when(a.started)}`);
    if (a.duration !== undefined && a.duration !== null) head.push(`took ${seconds(a.duration)}`);
    if (a.engine) head.push(`on ${a.engine}`);
    if (a.peak_rss) head.push(`peak memory ${bytes(a.peak_rss)}`);
    return h("li", { "data-attempt": a.attempt || i + 1 }, h("span", { text: head.join(", ") + ": " }),
      h("span.nbm-err", { text: a.error || "failed" }),
      a.traceback ? h("details.nbm-log", null, h("summary", { text: "traceback" }), h("pre", { text: a.traceback })) : null);
  });
  return h("details.nbm-log.nbm-attempts", { open: true, "data-log": "attempts" },
    h("summary", { text: `earlier attempts (${att.length})` }), h("ol", null, items));
}

/** The running jobs' progress bars, under the board's own (the most recently reported
 * first, at most SHOWN). */
const SHOWN = 8;

export class JobProgress {
  constructor(store, pick) {
    this.store = store;
    this.node = h("div.nbm-jprog", { hidden: true });
    this.ids = new Set();
    this.node.addEventListener("click", (e) => {
      const link = e.target.closest("[data-goto]");
      if (link) {
        e.preventDefault();
        pick(link.dataset.goto);
      }
    });
  }

  update(event) {
    const ids = this.ids;
    if (event.type === "reset") {
      ids.clear();
      for (const job of this.store.jobs.values()) if (progressOf(job)) ids.add(job.id);
    } else {
      let touched = false;
      for (const job of event.changed.concat(event.added)) {
        const has = !!progressOf(job);
        if (has || ids.has(job.id)) touched = true;
        if (has) ids.add(job.id);
        else ids.delete(job.id);
      }
      for (const job of event.gone) if (ids.delete(job.id)) touched = true;
      if (!touched) return;
    }
    this.render();
  }

  render() {
    const jobs = [...this.ids].map((id) => this.store.get(id)).filter((j) => j && progressOf(j));
    this.node.hidden = !jobs.length;
    if (!jobs.length) return this.node.replaceChildren();
    jobs.sort((a, b) => (a.x.t0 || 0) - (b.x.t0 || 0));
    const rows = jobs.slice(0, SHOWN).map((job) => h("div.nbm-jp", null,
      h("a.nbm-link", { href: "#", "data-goto": job.id, title: `${job.id}: running` }, h("i.nbm-dot.st-running"), job.id),
      progressBar(job, progressOf(job))));
    if (jobs.length > SHOWN) rows.push(h("div.nbm-more", { text: `and ${jobs.length - SHOWN} more running jobs report progress` }));
    this.node.replaceChildren(...rows);
  }
}
