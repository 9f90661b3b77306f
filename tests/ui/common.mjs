// What the browser test and the page benchmark share: their settings from
// the environment, Debian's chromium started headless, and a signed
// Stalwart delivery (base64 HMAC-SHA256 of the body in X-Signature).
import { chromium } from "playwright-core";
import { createHmac } from "node:crypto";

/** A setting the Rust side passes; a missing one is a mistake, said at once. */
export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

/** Debian's chromium, headless, as the project's machines can run it. */
export function launch() {
  return chromium.launch({
    executablePath: env("CHROMIUM"),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

/** Posts `events` to the Stalwart webhook at `base`, signed with `secret`. */
export function postStalwart(base, secret, events) {
  const body = JSON.stringify({ events });
  return fetch(`${base}/ingest/stalwart/webhook`, {
    method: "POST",
    body,
    headers: { "content-type": "application/json", "x-signature": createHmac("sha256", secret).update(body).digest("base64") },
  });
}
