// The jobs view: one coloured cell per job, grouped by function; the children of a dynamic
// job sit in a bracket right after their parent's cell, and appear there as they are defined.
// One element per job, so 10,000 jobs are 10,000 small spans; groups out of view are not laid
// out or painted (content-visibility), and a batch touches only the cells that changed.

import { h, seconds } from "./dom.js";
import { STATES } from "./store.js";

export class Grid {
  constructor(store, pick) {
    this.store = store;
    this.node = h("div.nbm-jobs");
    this.cells = new Map(); // job id -> its cell
    this.kids = new Map(); // dynamic job id -> the box of its children
    this.groups = new Map(); // function -> {node, cells, head, members:Set}
    this.groupOf = new Map(); // job id -> function of its group
    this.selected = null;
    this.node.addEventListener("click", (e) => {
      const cell = e.target.closest(".nbm-c");
      if (cell) pick(cell.dataset.jobId);
    });
    this.node.addEventListener("mouseover", (e) => {
      const cell = e.target.closest(".nbm-c");
      if (cell && !cell.title) cell.title = this.tip(cell.dataset.jobId);
    });
  }

  tip(id) {
    const job = this.store.get(id);
    if (!job) return id;
    const parts = [`${id}`, `${job.state} · ${job.fn}`];
    if (job.x.dur !== undefined) parts.push(`took ${seconds(job.x.dur)}`);
    if (job.x.err) parts.push(job.x.err);
    if (job.state === "blocked" && job.x.by) parts.push(`blocked by ${job.x.by}`);
    if (job.children.length) parts.push(`${job.children.length} children`);
    return parts.join("\n");
  }

  build() {
    this.node.textContent = "";
    this.cells.clear();
    this.kids.clear();
    this.groups.clear();
    this.groupOf.clear();
    const store = this.store;
    const frags = new Map();
    for (const job of store.jobs.values()) {
      if (job.parent && store.get(job.parent)) continue; // placed with its parent
      const group = this._group(job.fn);
      let frag = frags.get(group);
      if (!frag) frags.set(group, (frag = document.createDocumentFragment()));
      this._place(job, frag, job.fn);
    }
    for (const [group, frag] of frags) group.cells.append(frag);
    for (const group of this.groups.values()) this._count(group);
    if (!store.jobs.size) this.node.append(h("div.nbm-empty", { text: "no jobs" }));
    if (this.selected) this.select(this.selected, false);
  }

  _group(fn) {
    let group = this.groups.get(fn);
    if (!group) {
      const head = h("div.nbm-gh");
      const cells = h("div.nbm-cells");
      const node = h("div.nbm-group", null, head, cells);
      group = { fn, node, head, cells, members: new Set() };
      this.groups.set(fn, group);
      this.node.append(node);
    }
    return group;
  }

  _cell(job) {
    const cell = document.createElement("span");
    cell.className = "nbm-c";
    cell.dataset.jobId = job.id;
    cell.dataset.state = job.state;
    if (job.parent) cell.dataset.parent = job.parent;
    this.cells.set(job.id, cell);
    return cell;
  }

  _place(job, container, fn) {
    const cell = this._cell(job);
    this.groupOf.set(job.id, fn);
    this.groups.get(fn).members.add(job.id);
    if (job.children.length) {
      const box = h("span.nbm-kids");
      this.kids.set(job.id, box);
      container.append(h("span.nbm-dyn", null, cell, box));
      for (const kid of job.children) {
        const child = this.store.get(kid);
        if (child && !this.cells.has(kid)) this._place(child, box, fn);
      }
    } else {
      container.append(cell);
    }
  }

  _kidsBox(parentId) {
    let box = this.kids.get(parentId);
    if (box) return box;
    const cell = this.cells.get(parentId);
    box = h("span.nbm-kids");
    const wrap = h("span.nbm-dyn");
    cell.replaceWith(wrap);
    wrap.append(cell, box);
    this.kids.set(parentId, box);
    return box;
  }

  _remove(id) {
    const cell = this.cells.get(id);
    if (!cell) return;
    const box = this.kids.get(id);
    const node = box ? box.parentNode : cell;
    for (const c of (box ? node.querySelectorAll(".nbm-c") : [cell])) {
      const jid = c.dataset.jobId;
      this.cells.delete(jid);
      this.kids.delete(jid);
      const fn = this.groupOf.get(jid);
      if (fn !== undefined) this.groups.get(fn)?.members.delete(jid);
      this.groupOf.delete(jid);
    }
    node.remove();
  }

  update(event) {
    if (event.type === "reset") return this.build();
    const touched = new Set();
    for (const job of event.gone) {
      touched.add(this.groupOf.get(job.id));
      this._remove(job.id);
    }
    for (const job of event.added) {
      if (this.cells.has(job.id)) continue;
      const parent = job.parent && this.cells.has(job.parent) ? job.parent : null;
      if (parent) {
        const fn = this.groupOf.get(parent);
        this._place(job, this._kidsBox(parent), fn);
        touched.add(fn);
      } else {
        this._group(job.fn);
        this._place(job, this.groups.get(job.fn).cells, job.fn);
        touched.add(job.fn);
        this.node.querySelector(".nbm-empty")?.remove();
      }
    }
    for (const job of event.changed) {
      const cell = this.cells.get(job.id);
      if (!cell) continue;
      if (cell.dataset.state !== job.state) {
        cell.dataset.state = job.state;
        touched.add(this.groupOf.get(job.id));
      }
      if (cell.title) cell.title = "";
    }
    for (const fn of touched) {
      const group = this.groups.get(fn);
      if (group) this._count(group);
    }
  }

  _count(group) {
    const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const id of group.members) {
      const job = this.store.get(id);
      if (job) counts[job.state] += 1;
    }
    const tally = STATES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`).join(" · ");
    group.head.replaceChildren(h("b", { text: group.fn }),
      h("span.nbm-gcount", { text: ` ${group.members.size} job${group.members.size === 1 ? "" : "s"}: ${tally}` }));
  }

  select(id, scroll = true) {
    if (this.selected) this.cells.get(this.selected)?.classList.remove("nbm-sel");
    this.selected = id;
    const cell = id && this.cells.get(id);
    if (!cell) return;
    cell.classList.add("nbm-sel");
    if (scroll) cell.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  /** Marks the cells of ``ids`` (a search); null clears. */
  mark(ids) {
    for (const cell of this.node.querySelectorAll(".nbm-hit")) cell.classList.remove("nbm-hit");
    if (!ids) return;
    for (const id of ids) this.cells.get(id)?.classList.add("nbm-hit");
  }
}
