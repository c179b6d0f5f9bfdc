import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { bundle, OUTPUT } from "../build.mjs";

test("the shipped bundle is up to date with js/src", () => {
  assert.equal(readFileSync(OUTPUT, "utf8"), bundle(), "run `npm run build` in js/");
});

test("the bundle is an ES module with anywidget's render entry point", async () => {
  const mod = await import(OUTPUT);
  assert.equal(typeof mod.default.render, "function");
  assert.equal(mod.render, undefined); // anywidget deprecates a named render export
  assert.equal(typeof mod.paintStroke, "function");
});
