// The browser page's pointer-to-step conversion: raw pointer samples (x, y, down) -> model steps.
// A port of Python's `infinipaint.actions.ActionStream` with the very same rules (read that module's
// docstring); tests/web/test_actionstream_js.py checks both give identical steps.
//
// Everything is exact integer arithmetic, so the result does not depend on the JS engine:
// - Python's `a // b` (floor division, also for negative a) is `floorDiv(a, b)` below.
// - Python compares `math.hypot(dx, dy)` with 4 and 12; for integers that is the same as comparing
//   `dx * dx + dy * dy` with 16 and 144 (the only integer points at distance exactly 4 or 12 lie on
//   the axes, where hypot is exact; every other distance is far from 4 and 12).
// - Python's `ceil(hypot(dx, dy) / 12)` is the smallest n with (12 n)^2 >= dx^2 + dy^2.

export const SCREEN = 224; // px: the screen is SCREEN x SCREEN
export const DEAD_ZONE = 4; // px: moves of this length or less are ignored
export const MAX_STEP = 12; // px: no drag or hover step is longer

// Python's `a // b` for integers, b > 0 (exact: |a| and b are far below 2^53).
function floorDiv(a, b) {
  return Math.floor(a / b);
}

// The squared length of (dx, dy) is more than `len` squared (Python: math.hypot(dx, dy) > len).
function longer(dx, dy, len) {
  return dx * dx + dy * dy > len * len;
}

// Integer points splitting (x0, y0) -> (x1, y1) into equal steps of at most MAX_STEP px.
// The first point is excluded, the last is exactly (x1, y1).
export function substeps(x0, y0, x1, y1) {
  const dx = x1 - x0;
  const dy = y1 - y0;
  let n = 1; // Python: max(1, ceil(hypot(dx, dy) / MAX_STEP))
  while (longer(dx, dy, MAX_STEP * n)) n++;
  for (;;) {
    const pts = [];
    for (let i = 1; i <= n; i++) {
      pts.push([x0 + floorDiv(2 * dx * i + n, 2 * n), y0 + floorDiv(2 * dy * i + n, 2 * n)]);
    }
    let ok = true;
    for (let i = 0; i < n && ok; i++) {
      const [px, py] = i === 0 ? [x0, y0] : pts[i - 1];
      ok = !longer(pts[i][0] - px, pts[i][1] - py, MAX_STEP);
    }
    if (ok) return pts;
    n++;
  }
}

// Check one raw sample like Python's `validate_action`; return it as integers or throw an Error.
// Accepted: integers (also integral floats such as 1.0, and booleans), 0 <= x, y < SCREEN, down 0 or 1.
export function validateSample(x, y, down) {
  const out = [];
  for (const [name, v] of [["x", x], ["y", y], ["down", down]]) {
    const n = typeof v === "boolean" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isInteger(n)) {
      throw new Error(`action ${name} must be an integer, got ${JSON.stringify(v) ?? String(v)}`);
    }
    out.push(n);
  }
  const [ix, iy, idown] = out;
  if (!(ix >= 0 && ix < SCREEN && iy >= 0 && iy < SCREEN)) {
    throw new Error(`action position (${ix}, ${iy}) outside the ${SCREEN}x${SCREEN} screen`);
  }
  if (idown !== 0 && idown !== 1) throw new Error(`action down must be 0 or 1, got ${idown}`);
  return out;
}

export class ActionStream {
  constructor() {
    this.last = null; // the last emitted step [x, y, down]
  }

  reset() {
    this.last = null;
  }

  // The steps [x, y, down] produced by one more raw sample (possibly none).
  push(x, y, down) {
    [x, y, down] = validateSample(x, y, down);
    let out;
    if (this.last === null) {
      out = [[x, y, down]];
    } else {
      const [lx, ly, ld] = this.last;
      const moved = longer(x - lx, y - ly, DEAD_ZONE);
      const strokeTo = (d) => (moved ? substeps(lx, ly, x, y).map(([px, py]) => [px, py, d]) : []);
      if (ld === down) {
        out = strokeTo(down); // drag or hover
      } else if (down) {
        out = [[x, y, 1]]; // press
      } else {
        out = strokeTo(1); // release: finish the stroke, then one idle step
        out.push(moved ? [x, y, 0] : [lx, ly, 0]);
      }
    }
    if (out.length) this.last = out[out.length - 1];
    return out;
  }

  // All steps for a whole list of raw [x, y, down] samples, through a fresh stream.
  static process(samples) {
    const stream = new ActionStream();
    const steps = [];
    for (const s of samples) {
      if (!Array.isArray(s) || s.length !== 3) {
        throw new Error(`action must be a sequence (x, y, down) of 3 entries, got ${JSON.stringify(s)}`);
      }
      steps.push(...stream.push(...s));
    }
    return steps;
  }
}
