// The graph view: dependencies (solid) and dynamic parent -> child links (dashed), laid out
// by dagre. Up to MAX_NODES jobs it shows them all; beyond, the neighbourhood of the chosen
// job (its dependencies, dependents, parent and children, breadth first).
// It fits the drawing to its box when drawn and whenever its width changes (the details
// panel opens or closes, the window is resized), until the user zooms; and it scrolls to
// keep the selected job and its neighbours in view.

import { graphlib, layout } from "@dagrejs/dagre";
import { h, middle } from "./dom.js";

export const MAX_NODES = 300;
const SVG = "http://www.w3.org/2000/svg";
const NODE_H = 20;
const FIT_MAX = 1.25; // a small graph is not blown up beyond this
const FIT_MIN = 0.3; // nor a big one shrunk below (it scrolls, around the selected job)

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

/** The jobs to draw: all of them, or the MAX_NODES nearest to ``focus``. */
export function neighbourhood(store, focus, max = MAX_NODES) {
  if (store.jobs.size <= max || !focus || !store.get(focus)) {
    if (store.jobs.size <= max) return [...store.jobs.keys()];
    if (!focus || !store.get(focus)) return [];
  }
  const seen = new Set([focus]);
  let frontier = [focus];
  while (frontier.length && seen.size < max) {
    const next = [];
    for (const id of frontier) {
      const job = store.get(id);
      if (!job) continue;
      const near = [...job.deps, ...store.dependents(id), ...job.children];
      if (job.parent) near.push(job.parent);
      for (const n of near) {
        if (seen.size >= max) break;
        if (!seen.has(n) && store.get(n)) {
          seen.add(n);
          next.push(n);
        }
      }
    }
    frontier = next;
  }
  return [...seen];
}

export class GraphView {
  constructor(store, pick) {
    this.store = store;
    this.pick = pick;
    this.node = h("div.nbm-graph");
    this.note = h("div.nbm-gnote");
    this.zoomBox = h("span.nbm-zoom", null,
      h("button", { type: "button", title: "smaller", onclick: () => this.zoom(0.8) }, "−"),
      h("button", { type: "button", title: "larger", onclick: () => this.zoom(1.25) }, "+"),
      h("button", { type: "button", title: "fit the graph in view", onclick: () => this.fit() }, "fit"));
    this.canvas = h("div.nbm-gcanvas");
    this.node.append(h("div.nbm-gbar", null, this.note, this.zoomBox), this.canvas);
    this.nodes = new Map(); // job id -> <g>
    this.key = "";
    this.focus = null;
    this.scale = 1;
    this.size = [0, 0];
    this.visible = false;
    this._timer = null;
    this.zoomed = false; // the user chose a scale: no more fitting
    this.pos = new Map(); // job id -> [x, y, width, height] of its node, unscaled
    this._width = 0;
    this.canvas.addEventListener("click", (e) => {
      const g = e.target.closest("[data-job-id]");
      if (g) this.pick(g.dataset.jobId);
    });
    if (typeof ResizeObserver !== "undefined") {
      this.observer = new ResizeObserver(() => this.resized());
      this.observer.observe(this.canvas);
    }
  }

  /** The box got wider or narrower (or was laid out for the first time): fit again. */
  resized() {
    const width = this.canvas.clientWidth;
    if (!this.visible || !this.svg || !width || width === this._width) return;
    if (!this.zoomed) this.fit(false);
    this._width = width;
    this.reveal(this.selected);
  }

  show(focus) {
    this.visible = true;
    if (focus !== undefined) this.focus = focus;
    this.draw();
  }

  hide() {
    this.visible = false;
  }

  /** Lays out and draws the chosen jobs again if the set (or its links) changed. */
  draw(force = false) {
    const store = this.store;
    let focus = this.focus;
    if (store.jobs.size > MAX_NODES && !(focus && store.get(focus))) {
      // No job chosen: start from a failed one, else a running one, else the first.
      const jobs = [...store.jobs.values()];
      const first = jobs.find((j) => j.state === "failed") || jobs.find((j) => j.state === "running") || jobs[0];
      focus = this.focus = first ? first.id : null;
    }
    const ids = neighbourhood(store, focus);
    const chosen = new Set(ids);
    const edges = [];
    for (const id of ids) {
      const job = store.get(id);
      for (const d of job.deps) if (chosen.has(d)) edges.push([d, id, false]);
      if (job.parent && chosen.has(job.parent)) edges.push([job.parent, id, true]);
    }
    const key = ids.join("\u0000") + "|" + edges.length;
    if (!force && key === this.key) return this.recolour();
    this.key = key;
    this.pos.clear();
    const total = store.jobs.size;
    this.note.textContent = total <= MAX_NODES
      ? `${total} job${total === 1 ? "" : "s"}`
      : `${ids.length} of ${total} jobs, around ${focus} (click a job to centre on it)`;
    this.canvas.textContent = "";
    this.nodes.clear();
    if (!ids.length) return;

    const g = new graphlib.Graph({ multigraph: false });
    g.setGraph({ rankdir: "LR", nodesep: 6, ranksep: 36, edgesep: 4, marginx: 6, marginy: 6 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const id of ids) {
      const label = middle(id, 28);
      g.setNode(id, { width: Math.max(40, label.length * 6.6 + 14), height: NODE_H, label });
    }
    for (const [a, b] of edges) if (a !== b) g.setEdge(a, b);
    layout(g);

    const { width, height } = g.graph();
    this.size = [Math.ceil(width), Math.ceil(height)];
    const root = svg("svg", { class: "nbm-svg", viewBox: `0 0 ${this.size[0]} ${this.size[1]}` });
    const defs = svg("defs");
    const marker = svg("marker", { id: "nbm-arrow", viewBox: "0 0 8 8", refX: 7, refY: 4,
      markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,0 L8,4 L0,8 z", class: "nbm-arrowhead" }));
    defs.append(marker);
    root.append(defs);
    const edgeLayer = svg("g", { class: "nbm-edges" });
    for (const [a, b, dashed] of edges) {
      if (a === b) continue;
      const e = g.edge(a, b);
      if (!e || !e.points) continue;
      const d = e.points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join("");
      edgeLayer.append(svg("path", { d, class: dashed ? "nbm-edge nbm-child" : "nbm-edge",
        "marker-end": "url(#nbm-arrow)" }));
    }
    root.append(edgeLayer);
    const nodeLayer = svg("g", { class: "nbm-nodes" });
    for (const id of ids) {
      const n = g.node(id);
      const job = store.get(id);
      const node = svg("g", { class: "nbm-node", transform: `translate(${(n.x - n.width / 2).toFixed(1)},${(n.y - n.height / 2).toFixed(1)})` });
      node.dataset.jobId = id;
      node.dataset.state = job.state;
      if (job.parent) node.dataset.parent = job.parent;
      if (id === focus && total > MAX_NODES) node.classList.add("nbm-focus");
      node.append(svg("rect", { width: n.width, height: n.height, rx: 4 }));
      const text = svg("text", { x: 7, y: 14 });
      text.textContent = n.label;
      node.append(text);
      const title = svg("title");
      title.textContent = `${id}\n${job.state} · ${job.fn}`;
      node.append(title);
      nodeLayer.append(node);
      this.nodes.set(id, node);
      this.pos.set(id, [n.x - n.width / 2, n.y - n.height / 2, n.width, n.height]);
    }
    root.append(nodeLayer);
    this.svg = root;
    this.canvas.append(root);
    if (this.zoomed) this.applyScale();
    else this.fit(false);
    if (this.selected) this.select(this.selected);
    else if (focus && total > MAX_NODES) this.reveal(focus);
  }

  recolour() {
    for (const [id, node] of this.nodes) {
      const job = this.store.get(id);
      if (job && node.dataset.state !== job.state) node.dataset.state = job.state;
    }
  }

  update(event) {
    if (!this.visible) {
      this.key = ""; // draw again when shown
      return;
    }
    if (event.type === "reset" || event.added.length || event.gone.length) {
      // New jobs (dynamic children): lay out again, at most about once a second.
      this.recolour();
      clearTimeout(this._timer);
      this._timer = setTimeout(() => this.visible && this.draw(), event.type === "reset" ? 0 : 700);
      return;
    }
    this.recolour();
  }

  select(id) {
    this.selected = id;
    for (const node of this.canvas.querySelectorAll(".nbm-sel")) node.classList.remove("nbm-sel");
    const node = id && this.nodes.get(id);
    if (node) {
      node.classList.add("nbm-sel");
      this.reveal(id);
    } else if (this.visible && id && this.store.jobs.size > MAX_NODES) {
      this.focus = id; // a job outside the neighbourhood: centre on it
      this.draw();
    }
  }

  /** Scrolls so that the job and its neighbours are in view (the job alone, centred,
   * when they do not all fit). */
  reveal(id) {
    const at = id && this.pos.get(id);
    const job = id && this.store.get(id);
    if (!at || !job || !this.visible) return;
    const c = this.canvas;
    const vw = c.clientWidth;
    const vh = c.clientHeight;
    if (!vw || !vh) return;
    const s = this.scale;
    const box = (p) => [p[0] * s, p[1] * s, (p[0] + p[2]) * s, (p[1] + p[3]) * s];
    const [nx0, ny0, nx1, ny1] = box(at);
    let [x0, y0, x1, y1] = [nx0, ny0, nx1, ny1];
    const near = [...job.deps, ...this.store.dependents(id), ...job.children];
    if (job.parent) near.push(job.parent);
    for (const n of near) {
      const p = this.pos.get(n);
      if (!p) continue;
      const [a, b, cc, d] = box(p);
      x0 = Math.min(x0, a);
      y0 = Math.min(y0, b);
      x1 = Math.max(x1, cc);
      y1 = Math.max(y1, d);
    }
    const pad = 8;
    const along = (lo, hi, nlo, nhi, view, scroll) => {
      if (hi - lo + 2 * pad > view) return Math.max(0, (nlo + nhi) / 2 - view / 2); // centre the job
      if (lo - pad < scroll) return Math.max(0, lo - pad);
      if (hi + pad > scroll + view) return hi + pad - view;
      return scroll;
    };
    c.scrollLeft = along(x0, x1, nx0, nx1, vw, c.scrollLeft);
    c.scrollTop = along(y0, y1, ny0, ny1, vh, c.scrollTop);
  }

  applyScale() {
    if (!this.svg) return;
    this.svg.setAttribute("width", Math.round(this.size[0] * this.scale));
    this.svg.setAttribute("height", Math.round(this.size[1] * this.scale));
  }

  zoom(factor) {
    this.zoomed = true;
    this.scale = Math.min(4, Math.max(0.1, this.scale * factor));
    this.applyScale();
    this.reveal(this.selected);
  }

  /** The height the drawing may take before it scrolls. */
  maxHeight() {
    return Math.max(320, Math.min(760, Math.round((window.innerHeight || 900) * 0.75)));
  }

  /** Scales the drawing to fit its box (both ways, within FIT_MIN..FIT_MAX). ``byUser``:
   * the fit button, which also ends a zoom the user chose. */
  fit(byUser = true) {
    if (byUser) this.zoomed = false;
    const maxH = this.maxHeight();
    this.canvas.style.maxHeight = `${maxH}px`;
    const width = this.canvas.clientWidth;
    if (!width) {
      this.applyScale(); // not laid out yet: fitted once it is (resized)
      return;
    }
    this._width = width;
    const [w, hh] = this.size;
    const scale = Math.min(FIT_MAX, (width - 2) / Math.max(1, w), (maxH - 2) / Math.max(1, hh));
    this.scale = Math.max(FIT_MIN, scale);
    this.applyScale();
    if (byUser) this.reveal(this.selected);
  }

  dispose() {
    clearTimeout(this._timer);
    if (this.observer) this.observer.disconnect();
  }
}
