// The tests' browser driver: opens Infinipaint's page in headless Chromium (playwright-core, from
// src/infinipaint/web/npm), plays a script of pointer operations on the page's canvas and prints
// what the page did as one JSON object on stdout.
//
//   node tests/web/page_drive.mjs PLAN.json      (or the plan as JSON on stdin)
//
// The plan: {url, chromium: "/usr/bin/chromium", timeout_ms, init_script: "JS run before the
// page's own" (optional), viewport: {width, height} (optional; 900 x 1000), ops: [...]}. Operations,
// positions in the model's screen pixels (0..223, mapped to the centre of that pixel on the canvas
// as laid out):
//   {op: "move", x, y}   {op: "down"}   {op: "up"}   {op: "wait", ms}   {op: "idle"} (the page's
//   queue is empty)   {op: "reset"} (clicks the page's Reset button)   {op: "snapshot"} (records
//   steps and frame now)   {op: "screenshot", path: "FILE.png"} (a full-page PNG of the page now)
// The result: {ready, error (of the driver), page_error, message: {text, visible, error}, steps, frame (base64 RGB),
// latency, timings, phases, threads, isolated, partial, dropped, snapshots, console}.

import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const npmDir = process.env.INFINIPAINT_NPM
  ?? fileURLToPath(new URL('../../src/infinipaint/web/npm/', import.meta.url));
const { chromium } = createRequire(`${npmDir}/package.json`)('playwright-core');

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

const plan = JSON.parse(process.argv[2] ? readFileSync(process.argv[2], 'utf8') : readFileSync(0, 'utf8'));
const timeout = plan.timeout_ms ?? 60000;
const result = { ready: false, error: null, console: [], snapshots: [] };

const browser = await chromium.launch({ executablePath: plan.chromium ?? '/usr/bin/chromium', headless: true, args: ARGS, timeout });
try {
  const page = await browser.newPage({ viewport: plan.viewport ?? { width: 900, height: 1000 } });
  page.setDefaultTimeout(timeout);
  page.on('console', (m) => result.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => result.console.push(`pageerror: ${e.message}`));
  if (plan.init_script) await page.addInitScript(plan.init_script);
  await page.goto(plan.url);
  // Loaded (the message hidden) or failed (the message is an error).
  await page.waitForFunction(() => {
    const m = document.getElementById('message');
    return m && (m.hidden || m.classList.contains('error'));
  });
  const readMessage = () => page.evaluate(() => {
    const m = document.getElementById('message');
    return { text: m.textContent, visible: !m.hidden && m.getBoundingClientRect().height > 0, error: m.classList.contains('error') };
  });
  result.message = await readMessage();
  result.ready = !result.message.visible;
  const box = await page.locator('#screen').boundingBox();
  const at = (x, y) => [box.x + (x + 0.5) * box.width / 224, box.y + (y + 0.5) * box.height / 224];
  const state = () => page.evaluate(() => {
    const ip = window.infinipaint;
    return { steps: ip.steps, frame: ip.frame(), latency: ip.latency, timings: ip.timings, phases: ip.phases, threads: ip.threads,
      page_error: ip.error, isolated: self.crossOriginIsolated, partial: ip.partial, dropped: ip.dropped };
  });
  if (result.ready) {
    for (const o of plan.ops ?? []) {
      if (o.op === 'move') await page.mouse.move(...at(o.x, o.y));
      else if (o.op === 'down') await page.mouse.down();
      else if (o.op === 'up') await page.mouse.up();
      else if (o.op === 'wait') await page.waitForTimeout(o.ms);
      else if (o.op === 'idle') await page.evaluate(() => window.infinipaint.idle());
      else if (o.op === 'reset') await page.click('#reset');
      else if (o.op === 'snapshot') result.snapshots.push(await state());
      else if (o.op === 'screenshot') await page.screenshot({ path: o.path, fullPage: true });
      else throw new Error(`unknown operation ${JSON.stringify(o)}`);
    }
    await page.evaluate(() => window.infinipaint.idle());
    Object.assign(result, await state());
    result.message = await readMessage();
  }
} catch (e) {
  result.error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result));
