import { test } from "node:test";
import assert from "node:assert/strict";
import { LatestCoalescer, StrokeBatcher } from "../src/lib/coalesce.js";

function manualFrames() {
  const queue = new Map();
  let next = 1;
  return {
    schedule: (fn) => {
      queue.set(next, fn);
      return next++;
    },
    cancel: (id) => queue.delete(id),
    tick() {
      const fns = [...queue.values()];
      queue.clear();
      for (const fn of fns) fn();
    },
    get pending() {
      return queue.size;
    },
  };
}

test("strokes: one message per frame, overlapping by one point, and a final one", () => {
  const frames = manualFrames();
  const sent = [];
  const b = new StrokeBatcher((m) => sent.push(m), frames);
  b.begin([1, 1], 5, false);
  b.add([2, 2]);
  b.add([2, 2]); // repeat: ignored
  b.add([3, 3]);
  assert.equal(sent.length, 0);
  assert.equal(frames.pending, 1);
  frames.tick();
  assert.deepEqual(sent, [{ type: "stroke", points: [[1, 1], [2, 2], [3, 3]], size: 5, erase: false, final: false }]);
  frames.tick(); // nothing new: nothing sent
  assert.equal(sent.length, 1);
  b.add([4, 4]);
  b.add([5, 5]);
  b.end([6, 6]);
  assert.equal(frames.pending, 0);
  assert.deepEqual(sent[1], { type: "stroke", points: [[3, 3], [4, 4], [5, 5], [6, 6]], size: 5, erase: false, final: true });
  assert.equal(b.active, false);
  b.add([7, 7]);
  frames.tick();
  assert.equal(sent.length, 2);
});

test("a click without moving still sends a final single-point stroke", () => {
  const frames = manualFrames();
  const sent = [];
  const b = new StrokeBatcher((m) => sent.push(m), frames);
  b.begin([4, 5], 2, true);
  b.end();
  assert.deepEqual(sent, [{ type: "stroke", points: [[4, 5]], size: 2, erase: true, final: true }]);
});

test("stroke end after a frame flush sends the overlap point with final: true", () => {
  const frames = manualFrames();
  const sent = [];
  const b = new StrokeBatcher((m) => sent.push(m), frames);
  b.begin([0, 0], 1, false);
  b.add([1, 0]);
  frames.tick();
  b.end();
  assert.deepEqual(sent.map((m) => [m.points, m.final]), [[[[0, 0], [1, 0]], false], [[[1, 0]], true]]);
});

test("latest-value coalescer sends once per frame and can drop", () => {
  const frames = manualFrames();
  const sent = [];
  const c = new LatestCoalescer((v) => sent.push(v), frames);
  c.push(1);
  c.push(2);
  c.push(3);
  frames.tick();
  assert.deepEqual(sent, [3]);
  frames.tick();
  assert.deepEqual(sent, [3]);
  c.push(4);
  c.drop();
  frames.tick();
  assert.deepEqual(sent, [3]);
  c.push(5);
  frames.tick();
  assert.deepEqual(sent, [3, 5]);
});
