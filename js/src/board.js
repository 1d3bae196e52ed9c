// The job board's front end, loaded once per kernel by each board's small loader
// (loader.js) from the shared BoardCode model. `attach` runs once per board model and keeps
// its JobStore in step with the kernel; `render` draws one view of it.

import { adopt, forget } from "./mount.js";
import { JobStore } from "./store.js";
import { BoardView } from "./view.js";

export { forget };

/** Keeps a store in step with the board's model: snapshot traits, batches of changes,
 * replies to requests, and the shared `busy` flag. ``queue`` holds the messages that came
 * before this code was loaded. */
export function attach(model, code, queue) {
  const store = new JobStore();
  const waiting = new Map();
  let next = 0;
  store.load(model.get("data") || {}, model.get("run"));
  store.busy = code.get("busy") || "";
  const receive = (msg) => {
    if (!msg || typeof msg !== "object") return;
    if (msg.t === "delta") store.apply(msg);
    else if (msg.t === "reply") {
      const done = waiting.get(msg.re);
      waiting.delete(msg.re);
      if (done) done(msg);
    }
  };
  for (const msg of queue) receive(msg);
  model.on("msg:custom", receive);
  model.on("change:data", () => store.load(model.get("data") || {}, model.get("run")));
  model.on("change:run", () => {
    store.setRun(model.get("run"));
    store.emit({ type: "delta", changed: [], added: [], gone: [] });
  });
  code.on("change:busy", () => {
    store.busy = code.get("busy") || "";
    store.emit({ type: "delta", changed: [], added: [], gone: [] });
  });
  store.link = {
    busy: () => (store.run.active ? store.run.cmd : store.busy),
    request: (kind, id) => new Promise((resolve) => {
      const re = `r${++next}`;
      waiting.set(re, resolve);
      model.send({ t: kind, job: id, re });
    }),
  };
  adopt(model.get("_uid"), store, render); // over its static board, once the command ended
  return store;
}

export function injectCss(code) {
  const id = `nbmake-board-css-${code.get("version")}`;
  if (document.getElementById(id)) return;
  const style = document.createElement("style");
  style.id = id;
  style.textContent = code.get("css") || "";
  document.head.append(style);
}

export function render(el, store) {
  const view = new BoardView(el, store, store.link);
  (globalThis.__nbmakeBoard ||= {}).lastView = view; // for benchmarks and debugging
  return () => view.dispose();
}
