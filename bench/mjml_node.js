// The official Node MJML compiler, warm and in-process, for bench/compose.py.
// Usage: node bench/mjml_node.js FILE.mjml
// Then write a number N on stdin per batch: it compiles FILE N times and answers one JSON
// line with the N timings (ms). Batches let the Python side interleave its own runs with
// these, so both see the same machine load. Run `npm install` in bench/ first.
"use strict";
const fs = require("fs");
const path = require("path");
const readline = require("readline");
const mjml2html = require(path.join(__dirname, "node_modules", "mjml"));
const version = require(path.join(__dirname, "node_modules", "mjml", "package.json")).version;

const source = fs.readFileSync(process.argv[2], "utf8");
const options = { validationLevel: "soft", keepComments: false };

async function batch(runs) {
  const times = [];
  let html = "";
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    ({ html } = await mjml2html(source, options));
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return { version, times, bytes: Buffer.byteLength(html) };
}

const lines = readline.createInterface({ input: process.stdin });
async function validate() {
  try {
    await mjml2html(source, { validationLevel: "strict" });
    return { errors: [] };
  } catch (err) {
    return { errors: (err.details || [{ message: String(err) }]).map((e) => e.formattedMessage || e.message) };
  }
}

lines.on("line", async (line) => {
  lines.pause();
  const result = line.trim() === "validate" ? await validate() : await batch(Number(line) || 1);
  process.stdout.write(JSON.stringify(result) + "\n");
  lines.resume();
});
