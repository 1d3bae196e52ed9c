// Builds the board's front end into the Python package (nbmake_ext/ui/static/), where it is
// committed, so that installing nbmake-ext needs no Node.js:
//   board.js   the board code with dagre bundled (ESM, minified): shared once per kernel
//   board.css  its styles
//   loader.js  each widget's own tiny ES module
// Run: npm install && npm run build   (add --check to fail if the shipped files are stale)
import { build } from "esbuild";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "nbmake_ext", "ui", "static");
const check = process.argv.includes("--check");
const banner = "/* nbmake_ext job board: built from js/ by `npm run build`; do not edit. */";

async function bundle(entry, options = {}) {
  const result = await build({
    entryPoints: [join(here, "src", entry)], bundle: true, format: "esm", minify: true,
    target: ["es2020"], write: false, legalComments: "eof", banner: { js: banner, css: banner },
    ...options,
  });
  return result.outputFiles[0].text;
}

const files = {
  "board.js": await bundle("board.js"),
  "board.css": await bundle("board.css", { loader: { ".css": "css" } }),
  "loader.js": await bundle("loader.js"),
};
await mkdir(out, { recursive: true });
let stale = [];
for (const [name, text] of Object.entries(files)) {
  const path = join(out, name);
  let old = null;
  try { old = await readFile(path, "utf8"); } catch {}
  if (old !== text) {
    stale.push(name);
    if (!check) await writeFile(path, text);
  }
  console.log(`${name.padEnd(10)} ${(text.length / 1024).toFixed(1)} KiB${old === text ? "" : check ? " (stale)" : " (written)"}`);
}
if (check && stale.length) {
  console.error(`out of date: ${stale.join(", ")}; run npm run build`);
  process.exit(1);
}
