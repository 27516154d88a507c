// Parses every ```mermaid block of a Markdown file with mermaid's own parser; exit 1 if any fails.
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

const file = process.argv[2];
const blocks = [...readFileSync(file, "utf8").matchAll(/^```mermaid\n([\s\S]*?)^```$/gm)];
let rejected = 0;
for (const [index, match] of blocks.entries()) {
  try {
    await mermaid.parse(match[1]);
  } catch (error) {
    rejected += 1;
    const line = readFileSync(file, "utf8").slice(0, match.index).split("\n").length;
    console.error(`${file}:${line}: mermaid block ${index + 1} rejected: ${String(error.message ?? error).split("\n").slice(0, 4).join(" | ")}`);
  }
}
console.log(`${file}: ${blocks.length} mermaid block(s) parsed by mermaid, ${rejected} rejected`);
process.exit(rejected ? 1 : 0);
