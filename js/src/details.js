// The details panel of the chosen job: everything the kernel pushed about it (no round trip
// needed while a run keeps the kernel busy), links to related jobs, and buttons that act on
// an idle kernel.

import { h, seconds, when } from "./dom.js";
import { attemptsBlock, runRows } from "./runinfo.js";

const LINKS_SHOWN = 60;

export class Details {
  constructor(store, actions) {
    this.store = store;
    this.actions = actions; // {goto(id), request(kind, id) -> Promise<reply>, busy() -> string}
    this.node = h("div.nbm-details", { "data-role": "details", hidden: true });
    this.id = null;
    this.node.addEventListener("click", (e) => {
      const link = e.target.closest("[data-goto]");
      if (link) {
        e.preventDefault();
        this.actions.goto(link.dataset.goto);
      }
    });
  }

  show(id) {
    this.id = id;
    const ui = this.store.ui;
    if (ui.message && ui.message[0] !== id) ui.message = null;
    this.render();
    const job = this.store.get(id);
    // Logs of an earlier run were not pushed (a big store): fetch them if the kernel is idle.
    if (job && job.x.part && !this.actions.busy() && !this._asked?.has(id)) {
      (this._asked ||= new Set()).add(id);
      this.act("details", true);
    }
  }

  hide() {
    this.id = null;
    this.node.hidden = true;
  }

  /** Re-renders if the shown job or one it links to changed. */
  update(event) {
    if (!this.id) return;
    if (event.type === "reset" || event.type === "ui") return this.render();
    const job = this.store.get(this.id);
    if (!job) return this.render();
    const related = new Set([this.id, job.parent, job.x.by, ...job.deps]);
    if ([...event.changed, ...event.added, ...event.gone].some((j) => related.has(j.id) || j.parent === this.id)) {
      this.render();
    }
  }

  link(id) {
    const job = this.store.get(id);
    const state = job ? job.state : "gone";
    return h("a.nbm-link", { href: "#", "data-goto": id, title: `${id}: ${state}` },
      h("i.nbm-dot.st-" + state), id);
  }

  links(ids) {
    if (!ids.length) return h("span.nbm-none", { text: "none" });
    const shown = ids.slice(0, LINKS_SHOWN).map((id) => this.link(id));
    const more = ids.length > LINKS_SHOWN ? h("span.nbm-more", { text: ` and ${ids.length - LINKS_SHOWN} more` }) : null;
    return h("span.nbm-links", null, shown, more);
  }

  render() {
    const id = this.id;
    const job = id && this.store.get(id);
    this.node.hidden = !id;
    if (!id) return;
    const close = h("button.nbm-close", { type: "button", title: "close", onclick: () => this.actions.goto(null) }, "×");
    if (!job) {
      this.node.replaceChildren(h("div.nbm-dh", null, h("b", { text: id }), close),
        h("p", { text: "This job is no longer on the board." }));
      return;
    }
    const x = job.x;
    const rows = [];
    // Plain divs: JupyterLab styles dl/dt/dd inside outputs (floats, widths).
    const row = (label, ...value) => rows.push(h("div.nbm-k", { text: label }), h("div.nbm-v", null, ...value));
    const head = h("div.nbm-dh", null,
      h("span.nbm-badge.st-" + job.state, { text: job.state }), " ",
      h("b.nbm-jid", { text: id }), close);
    const parts = [head];

    if (job.state === "blocked") {
      const root = this.store.blocker(job);
      if (root) {
        parts.push(h("div.nbm-blocked", null, "Blocked: ", this.link(root),
          " failed", x.by && x.by !== root ? [" (through ", this.link(x.by), ")"] : "", ". ",
          h("button.nbm-goto", { type: "button", "data-goto": root }, "go to the failed job →")));
      }
    }
    row("function", job.fn);
    const why = this.store.why(job);
    if (why === null) {
      row("why", h("span.nbm-none", { text: this.actions.busy()
        ? "not up to date; the reasons load when the kernel is idle"
        : "not up to date (see below for the reasons)" }));
    } else {
      row("why", why.length ? h("ul.nbm-why", null, why.map((r) => h("li", { text: r }))) : "up to date");
    }
    if (x.err) row("error", h("span.nbm-err", { text: x.err }));
    const timing = [];
    if (job.state === "running" && x.t0) timing.push(`running since ${when(x.t0)}`);
    else if (x.t0) timing.push(`started ${when(x.t0)}`);
    if (x.dur !== undefined && job.state !== "running") timing.push(`took ${seconds(x.dur)}`);
    if (x.cpu) timing.push(`cpu ${seconds(x.cpu)}`);
    if (x.eng) timing.push(`on ${x.eng}`);
    if (!timing.length && x.t1) timing.push(`ended ${when(x.t1)}`);
    if (timing.length) row("last run", timing.join(", "));
    runRows(job, row); // progress, attempt, options, peak memory
    if (x.ran && x.ran.length) row("ran because", x.ran.join("; "));
    if (job.parent) row("parent", this.link(job.parent));
    if (job.children.length) row(`children (${job.children.length})`, this.links(job.children));
    row(`depends on (${job.deps.length})`, this.links(job.deps));
    const dependents = this.store.dependents(id);
    row(`needed by (${dependents.length})`, this.links(dependents));
    parts.push(h("div.nbm-fields", null, rows));

    for (const [key, title] of [["tb", "traceback"], ["out", "stdout"], ["se", "stderr"]]) {
      if (x[key]) {
        parts.push(h("details.nbm-log", { open: true, "data-log": title },
          h("summary", { text: title }), h("pre", { text: x[key] })));
      }
    }
    const attempts = attemptsBlock(job); // failed attempts before the last run (job_retries)
    if (attempts) parts.push(attempts);
    if (x.part) {
      parts.push(h("p.nbm-note", { text: "Logs and reasons of earlier runs are loaded on request " +
        "in big stores (the kernel must be idle)." }));
    }
    parts.push(this.renderActions(job));
    this.node.replaceChildren(...parts);
  }

  renderActions(job) {
    const busy = this.actions.busy();
    const button = (kind, label, title) => h("button.nbm-act", { type: "button", "data-act": kind,
      title, "data-busy": busy ? "true" : null, onclick: () => this.act(kind) }, label);
    const box = h("div.nbm-actions", null,
      button("remake", "remake", `remake ${job.id}: run it again, then what depends on it`),
      button("clean", "clean", `clean ${job.id}: forget its result`),
      job.x.part || this.store.why(job) === null ? button("details", "load details", "fetch its logs and reasons from the store") : null,
      button("refresh", "refresh board", "read every job again from the store"));
    const message = this.store.ui.message;
    let text = message && message[0] === job.id ? message[1] : "";
    let kind = message && message[0] === job.id ? message[2] : "";
    if (busy && !text) {
      text = `The kernel is busy running ${busy}: these buttons work when it is idle.`;
      kind = "busy";
    }
    box.append(h("span.nbm-msg" + (kind ? ".nbm-" + kind : ""), { role: "status", text }));
    return box;
  }

  say(id, text, kind) {
    this.store.ui.message = [id, text, kind];
    this.store.touch(); // every view of the board shows it
  }

  async act(kind, quiet = false) {
    const id = this.id;
    const busy = this.actions.busy();
    if (busy) {
      this.say(id, `The kernel is busy running ${busy}; nothing was sent. Try again when it ends.`, "busy");
      return;
    }
    if (!quiet) this.say(id, `asking the kernel to ${kind === "details" ? "load the details" : kind}…`, "wait");
    const slow = setTimeout(() => this.say(id, "Waiting for the kernel: it is busy with another cell, " +
      "and will answer when that cell ends.", "busy"), 2500);
    try {
      const reply = await this.actions.request(kind, id);
      this.say(id, quiet && reply.ok ? "" : reply.msg, reply.ok ? "ok" : "error");
    } catch (err) {
      this.say(id, String(err), "error");
    } finally {
      clearTimeout(slow);
    }
  }
}
