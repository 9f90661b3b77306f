// The page's speed on a large store, in Debian's chromium (playwright-core).
// Started by `cargo bench -p audit-ingest-tests --bench ui` with the service
// running and seeded; prints one line per figure.
import { env, launch, postStalwart } from "./common.mjs";
import { gzipSync } from "node:zlib";

const BASE = env("BASE_URL");
const TOKEN = env("TOKEN");
const SECRET = env("STALWART_SECRET");
const RUNS = Number(process.env.RUNS || 15);

const sorted = (xs) => [...xs].sort((a, b) => a - b);
const pct = (xs, p) => sorted(xs)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))];
const report = (what, xs) =>
  console.log(`${what}: median ${pct(xs, 50).toFixed(0)} ms, p90 ${pct(xs, 90).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms (${xs.length} runs)`);

// The page's own assets, as a browser downloads them compressed.
let total = 0;
for (const path of ["/ui/", "/ui/app.js", "/ui/app.css", "/ui/icon.svg"]) {
  const body = Buffer.from(await (await fetch(BASE + path)).arrayBuffer());
  const gz = gzipSync(body, { level: 9 }).length;
  total += gz;
  console.log(`asset ${path}: ${body.length} bytes, ${gz} gzipped`);
}
console.log(`assets in all: ${(total / 1024).toFixed(1)} KiB gzipped`);

const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  await context.addInitScript((token) => sessionStorage.setItem("audit-ingest.token", token), TOKEN);
  const page = await context.newPage();

  // First meaningful paint: from the navigation to the first rows on screen.
  const paint = [];
  for (let i = 0; i < RUNS; i++) {
    await page.goto("about:blank");
    const t0 = Date.now();
    await page.goto(BASE + "/ui/");
    await page.waitForSelector("#events tbody tr");
    paint.push(Date.now() - t0);
  }
  report("timeline, navigation to first rows (24 h of the store)", paint);

  // A filter change: from the change to new rows on screen.
  const change = [];
  for (let i = 0; i < RUNS; i++) {
    const outcome = i % 2 ? "success" : "failure";
    const ms = await page.evaluate(async (want) => {
      const t0 = performance.now();
      const select = document.querySelector("#filters select[name=outcome]");
      select.value = want;
      select.dispatchEvent(new Event("change"));
      for (;;) {
        const first = document.querySelector("#events tbody tr td:nth-child(4)");
        if (first && first.textContent === want && document.querySelectorAll("#events tbody tr").length >= 50) return performance.now() - t0;
        await new Promise((r) => requestAnimationFrame(r));
      }
    }, outcome);
    change.push(ms);
  }
  report("filter change (outcome) to new rows", change);

  // The overview: navigation to the chart drawn, and the counts request alone.
  const overview = [];
  for (let i = 0; i < RUNS; i++) {
    await page.goto("about:blank");
    const t0 = Date.now();
    await page.goto(BASE + "/ui/overview?range=24h");
    await page.waitForSelector("#chart svg rect");
    overview.push(Date.now() - t0);
  }
  report("overview (24 h), navigation to the chart", overview);
  // The counts request alone, as the page makes it (its trail record written too).
  for (const [label, hours] of [["1 h", 1], ["24 h", 24], ["7 d (every record)", 168]]) {
    const times = [];
    for (let i = 0; i < RUNS; i++) {
      const until = new Date();
      const q = new URLSearchParams({ since: new Date(until - hours * 3600e3).toISOString(), until: until.toISOString() });
      const t0 = performance.now();
      const r = await fetch(`${BASE}/audit/stats?${q}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
      await r.json();
      times.push(performance.now() - t0);
    }
    report(`GET /audit/stats, ${label}`, times);
  }

  // Live: a signed webhook answered → its row on screen.
  await page.goto(BASE + "/ui/?live=1");
  await page.waitForFunction(() => document.querySelector("#live-status").textContent.startsWith("Live: new"));
  const live = [];
  for (let i = 0; i < RUNS * 2; i++) {
    const name = `live-${i}-${Date.now()}@acme`;
    const answer = await postStalwart(BASE, SECRET, [{ id: `b${i}`, createdAt: new Date().toISOString(), type: "auth.failed", data: { accountName: name, remoteIp: "192.0.2.7" } }]);
    if (!answer.ok) throw new Error(`webhook answered ${answer.status}`);
    const answered = Date.now();
    await page.waitForFunction((n) => [...document.querySelectorAll("#events tbody tr td:nth-child(5)")].slice(0, 5).some((c) => c.textContent === n), name, { polling: "raf" });
    live.push(Date.now() - answered);
  }
  report("live, webhook answered to the row on screen", live);
} finally {
  await browser.close();
}
