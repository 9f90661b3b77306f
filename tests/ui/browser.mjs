// The web page in Debian's chromium, driven by playwright-core. Started by
// tests/tests/end_to_end/ui_browser.rs with the service already running and
// seeded; the API (same service, read with the token) is the oracle for
// what the page must show. Exits non-zero on the first failed check.
import { env, launch, postStalwart } from "./common.mjs";
import { join } from "node:path";

const BASE = env("BASE_URL");
const TOKEN = env("TOKEN");
const TENANT_TOKEN = env("TENANT_TOKEN");
const SECRET = env("STALWART_SECRET");
const EXPECT_STALWART = Number(env("EXPECT_STALWART"));
const SHOTS = env("SHOTS_DIR");

const started = Date.now();
const log = (...args) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s]`, ...args);
function check(ok, message) {
  if (!ok) throw new Error(`FAILED: ${message}`);
  log(`ok: ${message}`);
}

async function apiText(path, token = TOKEN) {
  const r = await fetch(BASE + path, { headers: { Authorization: `Bearer ${token}` } });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.text();
}
const apiJson = async (path, token) => JSON.parse(await apiText(path, token));

/** Every record id `/audit?{query}` returns, walking every page. */
async function walkApi(query, token) {
  const ids = [];
  let cursor = null;
  for (;;) {
    const q = new URLSearchParams(query);
    q.set("limit", "500");
    if (cursor) q.set("cursor", cursor);
    const page = await apiJson(`/audit?${q}`, token);
    ids.push(...page.records.map((r) => r.id));
    if (!page.next) return ids;
    cursor = page.next;
  }
}

/** Scrolls the timeline until the page says it has everything. */
async function scrollToEnd(page) {
  for (let i = 0; i < 200; i++) {
    const end = await page.textContent("#timeline-end");
    if (end && (end.includes("that is all") || end.includes("No events"))) return;
    await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
    await page.waitForTimeout(100);
  }
  throw new Error("the timeline never reached its end");
}
const rowIds = (page) => page.$$eval("#events tbody tr", (rows) => rows.map((r) => r.dataset.id));

async function signIn(page, token) {
  await page.fill("#token", token);
  await page.click("#token-form button[type=submit]");
}

const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // The one refusal the script provokes (the wrong token) is logged by the browser; nothing else may be.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().includes("status of 401")) problems.push(`console: ${m.text()}`);
  });

  // Sign-in: `/` leads to the page; a wrong token is refused and says so.
  await page.goto(BASE + "/");
  check(new URL(page.url()).pathname === "/ui/", "/ redirects to /ui/");
  await page.waitForSelector("#sign-in:not([hidden])");
  await signIn(page, "not-a-valid-token");
  await page.waitForSelector("#sign-in-error:not([hidden])");
  check((await page.textContent("#sign-in-error")).includes("refused"), "a wrong token is refused with a message");
  await page.screenshot({ path: join(SHOTS, "sign-in.png") });
  await signIn(page, TOKEN);
  await page.waitForSelector("#events tbody tr");
  check(await page.isVisible("#timeline"), "the right token opens the timeline");
  await page.screenshot({ path: join(SHOTS, "timeline.png") });

  // Scroll: every Stalwart record, once, in the API's order (no repeats, no gaps).
  await page.goto(BASE + "/ui/?source=stalwart&range=all");
  await page.waitForSelector("#events tbody tr");
  await scrollToEnd(page);
  const shown = await rowIds(page);
  const expected = await walkApi({ source: "stalwart" });
  check(shown.length === EXPECT_STALWART, `the walk shows all ${EXPECT_STALWART} Stalwart records (${shown.length})`);
  check(new Set(shown).size === shown.length, "no record is shown twice");
  check(JSON.stringify(shown) === JSON.stringify(expected), "the rows are the API's records in the API's order");

  // Filters live in the URL and narrow the rows.
  await page.selectOption("#filters select[name=outcome]", "failure");
  await page.waitForURL(/outcome=failure/);
  await page.waitForSelector("#events tbody tr");
  await scrollToEnd(page);
  const outcomes = await page.$$eval("#events tbody tr td:nth-child(4)", (c) => c.map((x) => x.textContent));
  const failures = await walkApi({ source: "stalwart", outcome: "failure" });
  check(outcomes.length === failures.length && outcomes.every((o) => o === "failure"), `outcome=failure shows the ${failures.length} failures only`);
  const filtered = page.url();
  await page.reload();
  await page.waitForSelector("#events tbody tr");
  check((await page.inputValue("#filters select[name=outcome]")) === "failure", "a reloaded URL keeps its filters");
  check(page.url() === filtered, "the URL is stable across a reload");

  // An event in detail: fields, and the original's 64-bit numbers exact.
  await page.goto(BASE + "/ui/?source=stalwart&range=all");
  await page.waitForSelector("#events tbody tr");
  await page.keyboard.press("j");
  await page.keyboard.press("j");
  const picked = await page.$eval("#events tbody tr.selected", (r) => r.dataset.id);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#detail:not([hidden]) #original");
  const raw = await apiText(`/audit/${picked}`);
  const span = /"spanId":\s*(\d+)/.exec(raw)[1];
  check(BigInt(span) > 2n ** 53n, `the picked event's spanId ${span} is beyond 2^53`);
  const original = await page.textContent("#original");
  check(original.includes(`"spanId": ${span}`), "the original shows the spanId digit for digit");
  const record = JSON.parse(raw);
  check((await page.textContent('[data-field="actor-name"]')).startsWith(record.actor.name), "the detail shows the actor");
  check((await page.textContent('[data-field="mapper"]')).startsWith(record.mapper), "the detail shows the mapper version");
  await page.screenshot({ path: join(SHOTS, "detail.png") });
  await page.keyboard.press("Escape");
  await page.waitForSelector("#detail", { state: "hidden" });
  check((await page.$eval("#events tbody tr.selected", (r) => r.dataset.id)) === picked, "Esc returns to the same place in the timeline");

  // Pivot on the actor.
  await page.keyboard.press("Enter");
  await page.waitForSelector("#detail:not([hidden]) [data-pivot=actor]");
  await page.click("[data-pivot=actor]");
  await page.waitForURL(/actor=/);
  await page.waitForSelector("#events tbody tr");
  await scrollToEnd(page);
  const actorKey = new URL(page.url()).searchParams.get("actor");
  const sameActor = await walkApi({ actor: actorKey });
  const pivoted = await rowIds(page);
  check(pivoted.length === sameActor.length && pivoted.includes(picked), `the actor pivot shows the ${sameActor.length} records of ${actorKey}`);

  // Live: a webhook's event appears without a reload, above the rows.
  await page.goto(BASE + "/ui/?source=stalwart&live=1");
  await page.waitForSelector("#events tbody tr");
  await page.waitForFunction(() => document.querySelector("#live-status").textContent.startsWith("Live: new"));
  const before = (await rowIds(page)).length;
  const liveName = `live-${Date.now()}@acme`;
  const sent = Date.now();
  const answer = await postStalwart(BASE, SECRET, [{ id: "live-1", createdAt: new Date().toISOString(), type: "auth.failed",
    data: { accountName: liveName, remoteIp: "192.0.2.99" } }]);
  check(answer.ok, "the live webhook is accepted");
  const answered = Date.now();
  await page.waitForFunction((name) => document.querySelector("#events tbody tr td:nth-child(5)")?.textContent === name, liveName, { timeout: 5000 });
  log(`live event on screen ${Date.now() - answered} ms after the webhook was answered (${answered - sent} ms to answer)`);
  check((await rowIds(page)).length === before + 1, "the live event is added once, on top");
  await page.screenshot({ path: join(SHOTS, "live.png") });

  // Overview: the chart's bars add up to the stored count.
  await page.goto(BASE + "/ui/overview?range=7d&source=stalwart");
  await page.waitForSelector("#chart svg rect");
  const total = Number(await page.getAttribute("#overview-total", "data-total"));
  const bars = await page.$$eval("#chart rect", (r) => r.reduce((n, x) => n + Number(x.dataset.count), 0));
  check(total === EXPECT_STALWART + 1, `the overview counts ${EXPECT_STALWART + 1} Stalwart events (${total})`);
  check(bars === total, "the chart's bars add up to the total");
  const failedBars = await page.$$eval("#chart rect.failure", (r) => r.reduce((n, x) => n + Number(x.dataset.count), 0));
  check(failedBars === failures.length + 1, `the failure bars hold the ${failures.length + 1} failures`);
  check(await page.isVisible('#sources tr[data-source="stalwart"]'), "the source table lists Stalwart");
  await page.goto(BASE + "/ui/overview?range=24h");
  await page.waitForSelector("#chart svg rect");
  await page.screenshot({ path: join(SHOTS, "overview.png"), fullPage: true });

  // Dead letters: the rejected body is listed; re-mapping it keeps it.
  await page.goto(BASE + "/ui/dead-letters");
  await page.waitForSelector(".letter");
  check((await page.textContent(".letter pre")).includes("this is not json"), "the dead letter shows its raw body");
  await page.click(".letter header button");
  await page.waitForFunction(() => document.querySelector(".letter header .status")?.textContent === "still does not map");
  check(true, "re-mapping a letter the mapper still rejects says so");
  await page.screenshot({ path: join(SHOTS, "dead-letters.png") });
  await page.click("#dl-replay-all");
  await page.waitForFunction(() => document.querySelector("#dl-status").textContent.includes("still failing"));
  check((await page.textContent("#dl-status")).startsWith("1 looked at: 0 mapped"), "re-mapping all reports its progress");

  check(problems.length === 0, `no script errors on the page ${[...new Set(problems)].slice(0, 5).join("; ")}`);

  // A tenant reader: told so, and sees its tenant's records only.
  const tenantContext = await browser.newContext({ viewport: { width: 1400, height: 900 }, colorScheme: "dark" });
  const tenant = await tenantContext.newPage();
  await tenant.goto(BASE + "/ui/?range=all");
  await signIn(tenant, TENANT_TOKEN);
  await tenant.waitForSelector("#events tbody tr");
  check((await tenant.textContent("#scope-note")).includes("tenant acme only"), "the page tells a tenant reader whose records it shows");
  await tenant.screenshot({ path: join(SHOTS, "tenant-dark.png") });
  await scrollToEnd(tenant);
  const seen = await tenant.$$eval("#events tbody tr", (rows) => rows.map((r) => ({
    id: r.dataset.id, source: r.children[1].textContent, tenant: r.children[7].textContent })));
  check(seen.length > 0 && seen.every((r) => r.tenant === "acme"), `every row a tenant reader sees is acme's (${seen.length})`);
  // Its own reads keep adding trail records; every other record of acme is shown.
  const acme = new Set();
  for (const source of ["stalwart", "authentik", "ocis"]) (await walkApi({ tenant: "acme", source })).forEach((id) => acme.add(id));
  const shownOthers = seen.filter((r) => r.source !== "audit-ingest").map((r) => r.id);
  check(shownOthers.length === acme.size && shownOthers.every((id) => acme.has(id)), `the tenant reader sees all ${acme.size} acme records of the sources`);
  check(!(await tenant.isVisible("#nav-dead-letters")), "a tenant reader has no dead-letter view");

  // Sign-in with the identity provider: code flow with PKCE, back to the page.
  const idpContext = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const idp = await idpContext.newPage();
  await idp.goto(BASE + "/ui/overview");
  await idp.waitForSelector("#oidc-sign-in:not([hidden]) #oidc-button:not([disabled])");
  await idp.click("#oidc-button");
  await idp.waitForSelector("#overview:not([hidden]) #chart svg");
  check(new URL(idp.url()).pathname === "/ui/overview" && !idp.url().includes("code="), "the identity provider sends the reader back to the view it asked for, without the code in the URL");
  check((await idp.textContent("#who-name")).startsWith("carol"), "signed in as the provider's user");
  check((await idp.textContent("#scope-note")).includes("tenant acme only"), "the provider's groups decide the tenant");
  log("all checks passed");
} finally {
  await browser.close();
}
