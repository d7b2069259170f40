// fal's JavaScript client, unchanged, against this app through fal's proxy protocol only
// (run by tests/test_fal_clients.py): node fal_js.mjs <app url> <picture data: URI file>.
// FAL_KEY is this app's SVD_API_KEY. Prints one JSON object: what each call gave.
import { readFileSync } from "node:fs";
import { fal, ValidationError } from "@fal-ai/client";

const [base, picturePath] = process.argv.slice(2);
// In Node.js a plain string proxies nothing in @fal-ai/client 1.10; "always" does.
fal.config({ proxyUrl: { url: `${base}/api/fal/proxy`, when: "always" } });
const APP = "fal-ai/svd";
const small = {
  image_url: readFileSync(picturePath, "utf8").trim(),
  steps: 2, num_frames: 4, width: 192, height: 128,
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const out = {};

async function failure(call) {
  try {
    await call();
    return { status: null };
  } catch (e) {
    return { status: e.status, name: e.name, body: e.body ?? null, requestId: e.requestId ?? "",
             fieldErrors: e instanceof ValidationError ? e.getFieldErrors("motion_bucket_id") : null };
  }
}

async function untilRunning(requestId) {
  for (let i = 0; i < 600; i++) {
    const s = await fal.queue.status(APP, { requestId });
    if (s.status === "IN_PROGRESS") return;
    await sleep(50);
  }
}

const ran = await fal.run(APP, { input: { ...small, seed: 3 } });
out.run = { requestId: ran.requestId, data: ran.data };

const updates = [];
const subscribed = await fal.subscribe(APP, {
  input: { ...small, seed: 4 }, logs: true,
  onQueueUpdate: (u) => updates.push({ status: u.status, logs: (u.logs ?? []).map((l) => l.message) }),
});
out.subscribe = { requestId: subscribed.requestId, data: subscribed.data, updates };

const streamed = [];
const viaStream = await fal.subscribe(APP, {
  input: { ...small, seed: 5 }, logs: true, mode: "streaming",
  onQueueUpdate: (u) => streamed.push({ status: u.status, logs: (u.logs ?? []).map((l) => l.message) }),
});
out.streaming = { requestId: viaStream.requestId, data: viaStream.data, updates: streamed };

const submitted = await fal.queue.submit(APP, { input: { ...small, seed: 6 } });
const statuses = [];
for (;;) {
  const s = await fal.queue.status(APP, { requestId: submitted.request_id, logs: true });
  statuses.push(s.status);
  if (s.status === "COMPLETED") break;
  await sleep(50);
}
const result = await fal.queue.result(APP, { requestId: submitted.request_id });
out.queue = { submitted, statuses, requestId: result.requestId, data: result.data };

const long = await fal.queue.submit(APP, { input: { ...small, steps: 100 } });
await untilRunning(long.request_id);
await fal.queue.cancel(APP, { requestId: long.request_id });
for (;;) {
  const s = await fal.queue.status(APP, { requestId: long.request_id });
  if (s.status === "COMPLETED") { out.cancelled = { status: s }; break; }
  await sleep(50);
}
out.cancelled.result = await failure(() => fal.queue.result(APP, { requestId: long.request_id }));
out.invalid = await failure(() => fal.run(APP, { input: { ...small, motion_bucket_id: 300 } }));
console.log(JSON.stringify(out));
