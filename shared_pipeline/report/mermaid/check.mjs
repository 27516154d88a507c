// Parses every ```mermaid block of the Markdown files given with mermaid's own parser; exit 1 if any fails.
// mermaid needs a DOM even to parse (DOMPurify): jsdom provides one, no browser needed.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>", { pretendToBeVisual: true });
globalThis.window = dom.window;
globalThis.document = dom.window.document;
for (const name of ["Element", "HTMLElement", "Node", "DOMParser", "SVGElement"]) {
  if (!(name in globalThis)) globalThis[name] = dom.window[name];
}
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

let rejected = 0;
for (const file of process.argv.slice(2)) {
  const text = readFileSync(file, "utf8");
  const blocks = [...text.matchAll(/^```mermaid\n([\s\S]*?)^```$/gm)];
  let here = 0;
  for (const [index, match] of blocks.entries()) {
    try {
      await mermaid.parse(match[1]);
    } catch (error) {
      here += 1;
      const line = text.slice(0, match.index).split("\n").length;
      console.error(`${file}:${line}: mermaid block ${index + 1} rejected: ${String(error.message ?? error).split("\n").slice(0, 4).join(" | ")}`);
    }
  }
  rejected += here;
  console.log(`${file}: ${blocks.length} mermaid block(s) parsed by mermaid, ${here} rejected`);
}
process.exit(rejected ? 1 : 0);
