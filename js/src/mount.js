// The interactive board over its static one. Once a command ended, its output holds the
// static board (plain HTML that a saved notebook shows wherever no kernel runs: no widget
// view, so never "model not found"), in an element `data-nbmake-board="<the board's _uid>"`.
// In the live page, whose widget manager still holds the board's model, the interactive
// board is mounted in that element, over the static one: when the output is (re)drawn, and
// when the model comes (a page reloaded on a running kernel restores it).

const SELECTOR = "[data-nbmake-board]";
const stores = new Map(); // uid -> the board's store, while its model lives
const mounts = new Set(); // {uid, host, live, dispose}
let observer = null;
let renderer = null;

/** The board of `uid` can be mounted from now on (its model is there); `render(el, store)`
 * draws a view and returns what disposes it. */
export function adopt(uid, store, render) {
  renderer = render;
  stores.set(uid, store);
  watch();
  for (const host of document.querySelectorAll(SELECTOR)) mount(host);
}

/** The model is gone (closed, or its kernel restarted): the static board shows again. */
export function forget(uid) {
  stores.delete(uid);
  for (const m of [...mounts]) if (m.uid === uid) unmount(m);
}

function watch() {
  if (observer || typeof MutationObserver === "undefined") return;
  observer = new MutationObserver((records) => {
    let seen = false;
    for (const record of records) {
      if (record.target.closest && record.target.closest(".nbm-live")) continue; // a board itself
      for (const node of record.addedNodes) {
        if (node.nodeType !== 1) continue;
        if (node.matches(SELECTOR)) mount(node);
        else if (node.querySelector(SELECTOR)) for (const host of node.querySelectorAll(SELECTOR)) mount(host);
      }
      if (record.removedNodes.length) seen = true;
    }
    if (seen) prune();
  });
  observer.observe(document.body, { childList: true, subtree: true });
}

function mount(host) {
  const uid = host.dataset.nbmakeBoard;
  const store = stores.get(uid);
  if (!store || host.querySelector(":scope > .nbm-live")) return;
  const live = document.createElement("div");
  live.className = "nbm-live";
  for (const child of host.children) child.hidden = true; // the static board, kept for forget()
  host.append(live);
  const m = { uid, host, live, dispose: renderer(live, store) };
  mounts.add(m);
}

function unmount(m) {
  mounts.delete(m);
  try {
    if (typeof m.dispose === "function") m.dispose();
  } finally {
    m.live.remove();
    for (const child of m.host.children) child.hidden = false;
  }
}

/** Views out of the page stop listening: their output was drawn again or cleared, or their
 * cell left a windowed notebook (mounted again when it comes back). */
function prune() {
  for (const m of [...mounts]) if (!m.host.isConnected) unmount(m);
}
