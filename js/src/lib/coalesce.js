// Coalescing of pointer input into custom messages: at most one message per animation frame,
// plus one at the end of a stroke. `schedule`/`cancel` default to requestAnimationFrame and can
// be replaced (tests drive frames by hand).

function defaultSchedule(fn) {
  return globalThis.requestAnimationFrame ? globalThis.requestAnimationFrame(fn) : setTimeout(fn, 16);
}

function defaultCancel(id) {
  if (globalThis.cancelAnimationFrame) globalThis.cancelAnimationFrame(id);
  else clearTimeout(id);
}

/**
 * Batches the points of one brush stroke. Each message carries the points since the previous
 * message of the stroke, starting with that message's last point, so the receiver can draw every
 * message as its own polyline and the union equals the whole stroke.
 */
export class StrokeBatcher {
  constructor(send, { schedule = defaultSchedule, cancel = defaultCancel } = {}) {
    this.send = send;
    this.schedule = schedule;
    this.cancel = cancel;
    this.active = false;
    this.points = [];
    this.fresh = 0; // points not yet sent
    this.timer = null;
    this.size = 0;
    this.erase = false;
    this.sent = 0;
  }

  begin(point, size, erase) {
    if (this.active) this.end();
    this.active = true;
    this.size = size;
    this.erase = !!erase;
    this.points = [point];
    this.fresh = 1;
    this.arm();
  }

  /** Adds a point; returns false when it repeats the last one (nothing new to draw). */
  add(point) {
    if (!this.active) return false;
    const last = this.points[this.points.length - 1];
    if (last && last[0] === point[0] && last[1] === point[1]) return false;
    this.points.push(point);
    this.fresh += 1;
    this.arm();
    return true;
  }

  arm() {
    if (this.timer === null) this.timer = this.schedule(() => {
      this.timer = null;
      this.flush(false);
    });
  }

  flush(final) {
    if (!this.active) return;
    if (this.fresh === 0 && !final) return;
    const points = this.points;
    this.send({ type: "stroke", points, size: this.size, erase: this.erase, final: !!final });
    this.sent += 1;
    this.points = [points[points.length - 1]];
    this.fresh = 0;
  }

  /** Ends the stroke: sends the remaining points with final: true. */
  end(point) {
    if (!this.active) return;
    if (point) this.add(point);
    if (this.timer !== null) {
      this.cancel(this.timer);
      this.timer = null;
    }
    this.flush(true);
    this.active = false;
    this.points = [];
  }

  dispose() {
    if (this.timer !== null) this.cancel(this.timer);
    this.timer = null;
    this.active = false;
  }
}

/** Keeps only the latest value and sends it at the next frame (patch position, etc.). */
export class LatestCoalescer {
  constructor(send, { schedule = defaultSchedule, cancel = defaultCancel } = {}) {
    this.send = send;
    this.schedule = schedule;
    this.cancel = cancel;
    this.value = undefined;
    this.pending = false;
    this.timer = null;
    this.last = undefined;
  }

  push(value) {
    this.value = value;
    this.pending = true;
    if (this.timer === null) this.timer = this.schedule(() => {
      this.timer = null;
      this.flush();
    });
  }

  flush() {
    if (!this.pending) return;
    this.pending = false;
    this.last = this.value;
    this.send(this.value);
  }

  /** Drops a pending value without sending it. */
  drop() {
    if (this.timer !== null) this.cancel(this.timer);
    this.timer = null;
    this.pending = false;
  }

  dispose() {
    this.drop();
  }
}
