// Each board's own ES module (notebooks save it with every widget, so it stays tiny): it
// fetches the board code from the kernel's shared BoardCode model and hands over to it.
const G = (globalThis.__nbmakeBoard ||= { boards: new Map(), code: new Map() });

function code(model) {
  const ref = String(model.get("_code") || "");
  return model.widget_manager.get_model(ref.replace(/^IPY_MODEL_/, "")).then((c) => {
    const v = c.get("version");
    if (!G.code.has(v)) {
      const url = URL.createObjectURL(new Blob([c.get("code")], { type: "text/javascript" }));
      G.code.set(v, import(/* webpackIgnore: true */ url).finally(() => URL.revokeObjectURL(url)));
    }
    return G.code.get(v).then((lib) => (lib.injectCss(c), [lib, c]));
  });
}

function board(model) {
  const uid = model.get("_uid");
  let entry = G.boards.get(uid);
  if (!entry) {
    const queue = [];
    const early = (msg) => queue.push(msg);
    model.on("msg:custom", early);
    entry = code(model).then(([lib, c]) => {
      model.off("msg:custom", early);
      return [lib, lib.attach(model, c, queue)];
    });
    G.boards.set(uid, entry);
  }
  return entry;
}

export default {
  initialize({ model }) {
    const uid = model.get("_uid");
    const entry = board(model); // starts listening at once; the code loads meanwhile
    return () => {
      G.boards.delete(uid);
      entry.then(([lib]) => lib.forget && lib.forget(uid), () => {});
    };
  },
  async render({ model, el }) {
    el.textContent = "loading the job board…";
    try {
      const [lib, store] = await board(model);
      return lib.render(el, store);
    } catch (err) {
      el.textContent = `job board: cannot load its code (${err})`;
      throw err;
    }
  },
};
