// Compile one MJML document (standard input) with the official Node MJML, strictly
// validated, for tests/test_mjml_node.py. Prints {"html", "errors"} as one JSON line.
// Run `npm ci` in bench/ first.
"use strict";
const path = require("path");
const mjml2html = require(path.join(__dirname, "node_modules", "mjml"));

let source = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (source += chunk));
process.stdin.on("end", async () => {
  let errors = [];
  try {
    await mjml2html(source, { validationLevel: "strict" });
  } catch (err) {
    errors = (err.details || [{ message: String(err) }]).map((e) => e.formattedMessage || e.message);
  }
  const { html } = await mjml2html(source, { validationLevel: "skip", keepComments: false });
  process.stdout.write(JSON.stringify({ html, errors }) + "\n");
});
