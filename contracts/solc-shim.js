#!/usr/bin/env node
// A stand-in for the native `solc` binary, backed by solc-js from npm.
// It answers the two calls py-solc-x makes: `--version` and `--standard-json`
// (input on stdin, output on stdout). Sources arrive inline, so no import
// callback is needed.
"use strict";
const solc = require("solc");

const args = process.argv.slice(2);
if (args.includes("--version")) {
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
  process.exit(0);
}
if (!args.includes("--standard-json")) {
  process.stderr.write("solc-shim: only --version and --standard-json are supported\n");
  process.exit(2);
}
const chunks = [];
process.stdin.on("data", (c) => chunks.push(c));
process.stdin.on("end", () => {
  process.stdout.write(solc.compile(Buffer.concat(chunks).toString("utf8")));
});
