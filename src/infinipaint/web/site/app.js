// Infinipaint in the browser: paint inside the network.
//
// Every frame on the canvas is drawn by the world model `infinipaint export web` wrote to model/,
// run in this tab by onnxruntime-web's WebAssembly backend (ort/); nothing is fetched from
// anywhere else. The page knows nothing of the paint program: only frames, pointer steps and
// three networks.
//   reset:  first_frame.rgb --encoder.onnx--> latent --decoder.onnx--> the frame, shown x3
//   every 80 ms the pointer (x, y, down) in screen pixels goes through the ActionStream (4-px dead
//   zone, sub-steps of at most 12 px, an idle step at the end of a stroke); each step it returns:
//           (latent, prev, action, origin) --step.onnx--> (latent, origin) --decoder.onnx--> frame
// Steps are queued and run in order, never two sessions at once. As in the Python viewer
// (viewer/dream.py, viewer/window.py): a sample whose steps would make the queue longer than 64
// steps is dropped whole (and counted); a click shorter than one interval still gives one `down`
// sample; with the button up and the pointer off the canvas nothing is sampled; a drag that
// leaves the canvas keeps painting along its edge.
//
// Page query: ?threads=N, the WebAssembly threads (default: onnxruntime-web's choice; more than 1
// needs cross-origin isolation, which `infinipaint serve` sets up).
// For tests and the curious, window.infinipaint: ready (a promise), steps (run since the reset),
// frame() (the frame shown, base64 of 224*224*3 RGB bytes), idle() (a promise: the queue is empty),
// latency {last, mean, count} in ms per step (step.onnx + decoder.onnx + drawing), timings (every
// step's ms), phases (every step's [step.onnx, decoding and drawing] ms), threads, partial (decodes
// only what changed), dropped (samples), reset(), error (the message shown, or null).

import { ActionStream } from './actionstream.js';

const SCREEN = 224; // px a side of the model's frame
const TICK_MS = 80; // pointer sampling interval (what the model was trained on)
const QUEUE = 64; // steps waiting at most; a sample whose steps do not fit is dropped whole

const $ = (id) => document.getElementById(id);
const canvas = $('screen');
const ctx = canvas.getContext('2d');
const image = ctx.createImageData(SCREEN, SCREEN);

const api = {
  ready: null, steps: [], error: null, threads: null, partial: null, dropped: 0, timings: [], phases: [],
  latency: { last: null, mean: null, count: 0 },
  frame: () => toBase64(state.frame), idle, reset: () => requestReset(),
};
window.infinipaint = api;

let model = null; // {ort, meta, sessions: {encoder, step, decoder}, first}
const state = { latent: null, prev: null, origin: null, frame: new Uint8Array(SCREEN * SCREEN * 3) };
let stream = new ActionStream();

// ------------------------------------------------------------------------------------ messages
function show(text, error = false) {
  const m = $('message');
  m.textContent = text;
  m.hidden = !text;
  m.classList.toggle('error', error);
}

function fail(err) {
  console.error(err);
  api.error = String(err && err.message ? err.message : err);
  show(api.error, true);
  $('reset').disabled = true;
}

// ------------------------------------------------------------------------------------- loading
const HINT = 'Write the site with `infinipaint export web --model DIR --out SITE` and open it with `infinipaint serve SITE`.';

async function fetchBytes(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`Could not load ${what} (${url}): ${e.message}. ${HINT}`);
  }
  if (!response.ok) throw new Error(`Could not load ${what}: ${url} answered HTTP ${response.status}. ${HINT}`);
  return new Uint8Array(await response.arrayBuffer());
}

async function checkFile(bytes, name, entry) {
  if (!entry) throw new Error(`model/model.json names no ${name}: an incomplete export. ${HINT}`);
  if (entry.bytes !== undefined && bytes.length !== entry.bytes) {
    throw new Error(`model/${name} has ${bytes.length} bytes, model.json says ${entry.bytes}: an incomplete or mixed export. ${HINT}`);
  }
  if (entry.sha256 && globalThis.crypto && crypto.subtle) {
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
    if (hex !== entry.sha256) throw new Error(`model/${name} does not match its sha256 in model.json: a corrupt or mixed export. ${HINT}`);
  }
}

async function load() {
  if (typeof WebAssembly !== 'object' || typeof WebAssembly.instantiate !== 'function') {
    throw new Error('This browser has no WebAssembly, which the page needs to run the network. '
      + 'Use a current browser with WebAssembly enabled.');
  }
  show('Loading the model…');
  const meta = JSON.parse(new TextDecoder().decode(await fetchBytes('model/model.json', 'the model description')));
  if (meta.format !== 'infinipaint-onnx' || meta.version !== 1) {
    throw new Error(`model/model.json is not an Infinipaint ONNX model of version 1 (format ${JSON.stringify(meta.format)}, version ${JSON.stringify(meta.version)}). ${HINT}`);
  }
  if (meta.screen !== SCREEN) throw new Error(`the model's screen is ${meta.screen} px, this page shows ${SCREEN} px`);
  const ort = await import('./ort/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href;
  const threads = parseInt(new URLSearchParams(location.search).get('threads') ?? '', 10);
  if (threads > 0) ort.env.wasm.numThreads = threads;
  const sessions = {};
  for (const name of ['encoder', 'step', 'decoder']) {
    const file = `${name}.onnx`;
    const bytes = await fetchBytes(`model/${file}`, `the ${name} network`);
    await checkFile(bytes, file, meta.files && meta.files[file]);
    sessions[name] = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  }
  const first = await fetchBytes('first_frame.rgb', 'the first frame');
  if (first.length !== SCREEN * SCREEN * 3) throw new Error(`first_frame.rgb has ${first.length} bytes, not ${SCREEN}*${SCREEN}*3. ${HINT}`);
  // A decoder of any latent size and a decode radius in model.json: decode only what changed.
  const size = meta.graphs && meta.graphs.decoder && meta.graphs.decoder.inputs[0].shape;
  const partial = Number.isInteger(meta.decode_radius) && Array.isArray(size) && size[2] === null && size[3] === null;
  api.threads = ort.env.wasm.numThreads;
  api.partial = partial;
  $('runtime').textContent = `WebAssembly, ${api.threads} thread${api.threads === 1 ? '' : 's'}`
    + (self.crossOriginIsolated ? '' : ' (not cross-origin isolated: no threads)');
  return { ort, meta, sessions, first, partial };
}

// --------------------------------------------------------------------------------- the model
function draw() {
  const rgba = image.data;
  for (let i = 0, j = 0; i < state.frame.length; i += 3, j += 4) {
    rgba[j] = state.frame[i]; rgba[j + 1] = state.frame[i + 1]; rgba[j + 2] = state.frame[i + 2]; rgba[j + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

async function decodeWhole() {
  const { frame } = await model.sessions.decoder.run({ latent: state.latent });
  state.frame = frame.data;
}

// The cells whose latent differs between `a` and `b` (C x n x n), as [y0, y1, x0, x1) or null.
function changedBox(a, b, n) {
  let y0 = n, y1 = -1, x0 = n, x1 = -1;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    const cell = i % (n * n), y = Math.floor(cell / n), x = cell % n;
    if (y < y0) y0 = y; if (y > y1) y1 = y; if (x < x0) x0 = x; if (x > x1) x1 = x;
  }
  return y1 < 0 ? null : [y0, y1 + 1, x0, x1 + 1];
}

// A span lo..hi of cells grown to a multiple of DECODE_TILE, inside 0..n (as `stepping.redraw_box`:
// few window shapes, whose kernels are built once).
const DECODE_TILE = 8;
function tileSpan(lo, hi, n) {
  const size = Math.min(Math.ceil((hi - lo) / DECODE_TILE) * DECODE_TILE, n);
  lo = Math.max(Math.min(lo, n - size), 0);
  return [lo, lo + size];
}

// Decode only what the step can have changed, as `WorldModel.step` does: with a local decoder
// (model.json's decode_radius r, a decoder of any latent size), the cells within r of a changed
// one are decoded again with their whole receptive field (r more) and pasted into the frame: the
// same pixels as decoding the whole latent. Where that is most of the map, decode it whole.
async function decodeChanged(box) {
  const { ort, meta, sessions, partial } = model;
  const n = meta.grid, r = meta.decode_radius, s = meta.screen / meta.grid;
  if (!partial) return decodeWhole();
  const [py0, py1, px0, px1] = [Math.max(box[0] - r, 0), Math.min(box[1] + r, n), Math.max(box[2] - r, 0), Math.min(box[3] + r, n)];
  const [wy0, wy1] = tileSpan(Math.max(py0 - r, 0), Math.min(py1 + r, n), n);
  const [wx0, wx1] = tileSpan(Math.max(px0 - r, 0), Math.min(px1 + r, n), n);
  const h = wy1 - wy0, w = wx1 - wx0, c = meta.latent_channels;
  if (h * w > 0.6 * n * n) return decodeWhole();
  const z = state.latent.data, crop = new Float32Array(c * h * w);
  for (let k = 0, o = 0; k < c; k++) {
    for (let y = wy0; y < wy1; y++, o += w) crop.set(z.subarray((k * n + y) * n + wx0, (k * n + y) * n + wx1), o);
  }
  const { frame } = await sessions.decoder.run({ latent: new ort.Tensor('float32', crop, [1, c, h, w]) });
  const tile = frame.data, rowBytes = w * s * 3, out = state.frame.slice();
  for (let y = py0 * s; y < py1 * s; y++) {
    const from = (y - wy0 * s) * rowBytes + (px0 - wx0) * s * 3;
    out.set(tile.subarray(from, from + (px1 - px0) * s * 3), (y * meta.screen + px0 * s) * 3);
  }
  state.frame = out;
}

async function resetModel() {
  const { ort, meta, sessions, first } = model;
  const out = await sessions.encoder.run({ frames: new ort.Tensor('uint8', first, [1, SCREEN, SCREEN, 3]) });
  state.latent = out.latent;
  state.prev = meta.reset_action.slice();
  state.origin = meta.reset_origin.slice();
  await decodeWhole();
  draw();
  api.steps = [];
  api.timings = [];
  api.phases = [];
  api.latency = { last: null, mean: null, count: 0 };
  api.dropped = 0;
  showLatency();
}

async function runStep(step) {
  const t0 = performance.now();
  const { ort, meta, sessions } = model;
  const int64 = (values, dims) => new ort.Tensor('int64', BigInt64Array.from(values, BigInt), dims);
  const out = await sessions.step.run({
    latent: state.latent, prev: int64(state.prev, [1, 3]), action: int64(step, [1, 3]), origin: int64(state.origin, [1, 2]),
  });
  const box = changedBox(out.next_latent.data, state.latent.data, meta.grid); // a hover changes nothing: no decode
  state.latent = out.next_latent;
  state.origin = Array.from(out.next_origin.data, Number);
  state.prev = step;
  const t1 = performance.now();
  if (box) {
    await decodeChanged(box);
    draw();
  }
  const ms = performance.now() - t0;
  api.steps.push(step);
  api.timings.push(ms);
  api.phases.push([t1 - t0, ms - (t1 - t0)]);
  const k = api.latency.count + 1;
  api.latency = { last: ms, mean: ((api.latency.mean ?? 0) * (k - 1) + ms) / k, count: k };
  showLatency();
}

function showLatency() {
  const { last, mean, count } = api.latency;
  const notes = [queue.length ? `behind: ${queue.length} steps` : '', api.dropped ? `${api.dropped} samples dropped` : ''];
  $('latency').textContent = [count ? `step ${last.toFixed(1)} ms, mean ${mean.toFixed(1)} ms over ${count} step${count === 1 ? '' : 's'}`
    : 'no steps yet', ...notes].filter(Boolean).join('; ');
}

// ------------------------------------------------------------------- the queue (one at a time)
const queue = []; // functions returning promises, run in order
let busy = false;
let waiters = [];

async function pump() {
  busy = true;
  try {
    while (queue.length) await queue.shift()();
  } catch (e) {
    queue.length = 0;
    fail(e);
  }
  busy = false;
  for (const resolve of waiters.splice(0)) resolve();
}

function enqueue(task) {
  queue.push(task);
  if (!busy) pump();
}

function drained() {
  return busy || queue.length ? new Promise((resolve) => waiters.push(resolve)) : Promise.resolve();
}

async function idle() {
  await api.ready;
  await drained();
}

function requestReset() {
  queue.length = 0; // the steps not yet run belong to the old session
  stream = new ActionStream();
  pointer.clicked = false;
  enqueue(resetModel);
}

// ---------------------------------------------------------------------------------- pointer
const pointer = { x: 0, y: 0, down: false, clicked: false, inside: false };

function place(e) {
  const r = canvas.getBoundingClientRect();
  const x = Math.floor((e.clientX - r.left) * SCREEN / r.width);
  const y = Math.floor((e.clientY - r.top) * SCREEN / r.height);
  pointer.inside = x >= 0 && x < SCREEN && y >= 0 && y < SCREEN;
  pointer.x = Math.min(Math.max(x, 0), SCREEN - 1);
  pointer.y = Math.min(Math.max(y, 0), SCREEN - 1);
}

canvas.addEventListener('pointerdown', (e) => {
  if (e.button !== 0 || !e.isPrimary) return; // the left button, the first finger
  e.preventDefault();
  canvas.setPointerCapture(e.pointerId); // a drag that leaves the canvas keeps painting along its edge
  place(e);
  pointer.down = pointer.clicked = true;
});
canvas.addEventListener('pointermove', (e) => { if (e.isPrimary) place(e); });
canvas.addEventListener('pointerup', (e) => { place(e); pointer.down = false; });
canvas.addEventListener('pointercancel', () => { pointer.down = false; });
canvas.addEventListener('pointerleave', () => { if (!pointer.down) pointer.inside = false; });
window.addEventListener('blur', () => { pointer.down = false; });

function sample() {
  if (!model || api.error) return;
  const down = pointer.down || pointer.clicked; // a click shorter than one interval: one down sample
  pointer.clicked = false;
  if (!pointer.inside && !down) return; // hovering elsewhere is not a move
  const last = stream.last;
  const steps = stream.push(pointer.x, pointer.y, down ? 1 : 0);
  if (queue.length + steps.length > QUEUE) { // the model is far behind: as if this sample never came
    stream.last = last;
    api.dropped += 1;
    showLatency();
    return;
  }
  for (const step of steps) enqueue(() => runStep(step));
}

// ------------------------------------------------------------------------------------- start
function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

api.ready = (async () => {
  try {
    model = await load();
    requestReset();
    await drained();
    if (api.error) throw new Error(api.error);
    show('');
    $('reset').disabled = false;
    $('reset').addEventListener('click', requestReset);
    setInterval(sample, TICK_MS);
  } catch (e) {
    fail(e);
    throw e;
  }
})();
api.ready.catch(() => {}); // shown on the page; tests read api.error
