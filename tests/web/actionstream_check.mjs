// Runs the browser page's ActionStream (src/infinipaint/web/site/actionstream.js) under node for
// tests/web/test_actionstream_js.py. Reads one JSON object on stdin, prints one JSON object:
//   {"streams": [[[x, y, down], ...], ...]} -> {"steps": [[[x, y, down], ...], ...]}
//       each stream through a fresh ActionStream, pushed sample by sample;
//   {"bad": [[x, y, down], ...]}            -> {"throws": [bool, ...]}
//       whether pushing the sample into a fresh ActionStream throws;
//   {"substeps": [[x0, y0, x1, y1], ...]}   -> {"substeps": [[[x, y], ...], ...]}
import { readFileSync } from "node:fs";
import { ActionStream, substeps } from "../../src/infinipaint/web/site/actionstream.js";

const request = JSON.parse(readFileSync(0, "utf8"));
const reply = {};

if (request.streams) {
  reply.steps = request.streams.map((samples) => {
    const stream = new ActionStream();
    const steps = [];
    for (const [x, y, down] of samples) steps.push(...stream.push(x, y, down));
    return steps;
  });
}

if (request.bad) {
  reply.throws = request.bad.map(([x, y, down]) => {
    try {
      new ActionStream().push(x, y, down);
      return false;
    } catch (e) {
      if (!(e instanceof Error) || !e.message) throw new Error(`unclear error for ${JSON.stringify([x, y, down])}`);
      return true;
    }
  });
}

if (request.substeps) {
  reply.substeps = request.substeps.map(([x0, y0, x1, y1]) => substeps(x0, y0, x1, y1));
}

process.stdout.write(JSON.stringify(reply));
