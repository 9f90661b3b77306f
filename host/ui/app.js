// audit-ingest's page. Plain JavaScript, no library, no build step: it
// talks to the same API as any client (/audit, /audit/{id}, /audit/stream,
// /audit/stats, /admin/...), with the reader's token from session storage.
"use strict";

const TOKEN_KEY = "audit-ingest.token";
const PAGE = 100;
const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 24 * 3600e3, "7d": 7 * 24 * 3600e3 };
const FILTERS = ["source", "action", "outcome", "actor", "ip", "tenant", "q"];

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    // Through the CSSOM: the page's policy allows no style attributes.
    else if (k === "style") for (const [prop, value] of Object.entries(v)) node.style.setProperty(prop, value);
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
};

// ---------------------------------------------------------------- lossless JSON
// Originals hold 64-bit ids (and larger): JSON.parse would round them. This
// parser keeps every number as its text, and `pretty` prints it back as is.
class Num { constructor(text) { this.text = text; } toString() { return this.text; } }

function parseLossless(text) {
  let i = 0;
  const ws = () => { while (i < text.length && " \t\n\r".includes(text[i])) i++; };
  const fail = (what) => { throw new SyntaxError(`${what} at ${i}`); };
  function value() {
    ws();
    const c = text[i];
    if (c === "{") {
      i++; const out = []; ws();
      if (text[i] === "}") { i++; return { obj: out }; }
      for (;;) {
        ws(); const k = string(); ws();
        if (text[i++] !== ":") fail("expected :");
        out.push([k, value()]); ws();
        if (text[i] === ",") { i++; continue; }
        if (text[i++] === "}") return { obj: out };
        fail("expected , or }");
      }
    }
    if (c === "[") {
      i++; const out = []; ws();
      if (text[i] === "]") { i++; return out; }
      for (;;) {
        out.push(value()); ws();
        if (text[i] === ",") { i++; continue; }
        if (text[i++] === "]") return out;
        fail("expected , or ]");
      }
    }
    if (c === '"') return string();
    const m = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (m) { i += m[0].length; return new Num(m[0]); }
    for (const [word, v] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, i)) { i += word.length; return v; }
    }
    fail("unexpected character");
  }
  function string() {
    if (text[i] !== '"') fail("expected string");
    let j = i + 1;
    while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
    const s = JSON.parse(text.slice(i, j + 1));
    i = j + 1;
    return s;
  }
  const v = value(); ws();
  if (i !== text.length) fail("trailing text");
  return v;
}

/** A field of a lossless object. */
function field(v, name) {
  if (!v || !v.obj) return undefined;
  const hit = v.obj.find(([k]) => k === name);
  return hit ? hit[1] : undefined;
}

/** Plain JS value of a lossless one (numbers stay text); for normalised fields. */
function plain(v) {
  if (v instanceof Num) return v.text;
  if (Array.isArray(v)) return v.map(plain);
  if (v && v.obj) return Object.fromEntries(v.obj.map(([k, x]) => [k, plain(x)]));
  return v;
}

/** Pretty-printed text and highlighted nodes of a lossless value. */
function pretty(v, indent = "") {
  const inner = indent + "  ";
  if (v instanceof Num) return [el("span", { class: "j-num", text: v.text })];
  if (typeof v === "string") return [el("span", { class: "j-str", text: JSON.stringify(v) })];
  if (v === null || typeof v === "boolean") return [el("span", { class: "j-lit", text: String(v) })];
  if (Array.isArray(v)) {
    if (!v.length) return ["[]"];
    const out = ["[\n"];
    v.forEach((x, n) => out.push(inner, ...pretty(x, inner), n + 1 < v.length ? ",\n" : "\n"));
    out.push(indent, "]");
    return out;
  }
  if (!v.obj.length) return ["{}"];
  const out = ["{\n"];
  v.obj.forEach(([k, x], n) => {
    out.push(inner, el("span", { class: "j-key", text: JSON.stringify(k) }), ": ", ...pretty(x, inner));
    out.push(n + 1 < v.obj.length ? ",\n" : "\n");
  });
  out.push(indent, "}");
  return out;
}

function prettyText(v) {
  return pretty(v).map((n) => (typeof n === "string" ? n : n.textContent)).join("");
}

// ---------------------------------------------------------------- API
const token = () => sessionStorage.getItem(TOKEN_KEY);

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = JSON.parse(text).error || message; } catch (_) { /* not JSON */ }
    if (response.status === 401 && token()) signOut(`Signed out: ${message}`);
    throw new ApiError(response.status, message);
  }
  return text;
}
const apiJson = async (path, options) => JSON.parse(await api(path, options));

// ---------------------------------------------------------------- formatting
const pad = (n, w = 2) => String(n).padStart(w, "0");
function localTime(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - new Date(iso)) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
function sourceHue(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 360;
  return h;
}
const sourceChip = (name) => el("span", { class: "src", style: { "--src": `hsl(${sourceHue(name)} 65% 50%)` }, text: name });
const outcomeBadge = (o) => el("span", { class: `badge o-${o}`, text: o });
const timeCell = (iso) => el("time", { datetime: iso, title: `${iso} (UTC)`, text: localTime(iso) });
function copyButton(text, label = "copy") {
  return el("button", {
    type: "button", class: "copy", title: "Copy to the clipboard", text: label,
    onclick: async (e) => {
      e.stopPropagation();
      try { await navigator.clipboard.writeText(text); e.target.textContent = "copied"; }
      catch (_) { e.target.textContent = "copy failed"; }
      setTimeout(() => { e.target.textContent = label; }, 1200);
    },
  });
}

// ---------------------------------------------------------------- session
let me = null;
const PKCE_KEY = "audit-ingest.sign-in";

const base64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const randomText = () => base64url(crypto.getRandomValues(new Uint8Array(32)));
const redirectUri = () => `${location.origin}/ui/`;

/** Offers sign-in with the identity provider when the service has a client for the page. */
async function offerIdentityProvider() {
  let config;
  try { config = await (await fetch("/ui/config.json")).json(); } catch (_) { return; }
  const box = $("#oidc-sign-in");
  if (!config.oidc) {
    box.hidden = !config.oidcError;
    if (config.oidcError) { $("#oidc-button").disabled = true; $("#oidc-note").textContent = config.oidcError; }
    return;
  }
  box.hidden = false;
  if (!window.isSecureContext) {
    $("#oidc-button").disabled = true;
    $("#oidc-note").textContent = "Signing in with the identity provider needs this page over HTTPS (or on localhost).";
    return;
  }
  $("#oidc-button").onclick = async () => {
    const verifier = randomText();
    const state = randomText();
    const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    // Where to return to after sign-in: the view the reader asked for.
    sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state, back: location.pathname + location.search, config: config.oidc }));
    const q = new URLSearchParams({
      response_type: "code", client_id: config.oidc.clientId, redirect_uri: redirectUri(),
      scope: config.oidc.scope, state, code_challenge: challenge, code_challenge_method: "S256",
    });
    location.assign(`${config.oidc.authorizationEndpoint}?${q}`);
  };
}

/** Completes a sign-in the identity provider sent back here (`?code=&state=`). */
async function finishIdentityProvider() {
  const params = new URLSearchParams(location.search);
  if (!params.has("state") || !(params.has("code") || params.has("error"))) return null;
  const pending = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
  sessionStorage.removeItem(PKCE_KEY);
  history.replaceState(null, "", pending ? pending.back : "/ui/");
  if (!pending || pending.state !== params.get("state")) return "The sign-in answer did not match a sign-in started here; try again.";
  if (params.has("error")) return `The identity provider refused: ${params.get("error_description") || params.get("error")}`;
  let answer;
  try {
    const response = await fetch(pending.config.tokenEndpoint, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code", code: params.get("code"), redirect_uri: redirectUri(),
        client_id: pending.config.clientId, code_verifier: pending.verifier,
      }),
    });
    answer = await response.json();
    if (!response.ok || !answer.access_token) return `The identity provider gave no token: ${answer.error_description || answer.error || response.status}`;
  } catch (e) {
    return `Could not reach the identity provider's token endpoint: ${e.message}`;
  }
  return signIn(answer.access_token);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  stopLive();
  history.pushState(null, "", location.pathname + location.search);
  route(message);
}

async function signIn(candidate) {
  // Asked directly (not through `api`): a refusal here is an answer, not a sign-out.
  try {
    const response = await fetch("/audit/me", { headers: { Authorization: `Bearer ${candidate}` } });
    if (response.status === 401) return "That token was refused.";
    if (!response.ok) return `Could not sign in: ${response.status} ${response.statusText}`;
    me = await response.json();
  } catch (e) {
    return `Could not sign in: ${e.message}`;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  return null;
}

function showSession() {
  const tenants = me.scopes.filter((s) => s.startsWith("read:tenant=")).map((s) => s.slice(12));
  const admin = me.scopes.includes("admin");
  $("#nav").hidden = false;
  $("#who").hidden = false;
  $("#who-name").textContent = `${me.name || me.id} · ${me.scopes.join(", ") || "no scopes"}`;
  $("#nav-dead-letters").hidden = !admin;
  const note = $("#scope-note");
  if (!me.scopes.includes("read") && tenants.length) {
    note.hidden = false;
    note.textContent = `You see the records of tenant${tenants.length > 1 ? "s" : ""} ${tenants.join(", ")} only.`;
  } else note.hidden = true;
}

// ---------------------------------------------------------------- routing
const views = ["sign-in", "timeline", "detail", "overview", "dead-letters"];
function show(...ids) {
  for (const v of views) $(`#${v}`).hidden = !ids.includes(v);
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("current", ids.includes(a.dataset.view));
}

function go(url) {
  history.pushState(null, "", url);
  route();
}

async function route(message) {
  if (!token() && !message) {
    const problem = await finishIdentityProvider();
    if (problem) return route(problem);
  }
  if (!token()) {
    show("sign-in");
    $("#nav").hidden = true;
    $("#who").hidden = true;
    $("#scope-note").hidden = true;
    const err = $("#sign-in-error");
    err.hidden = !message;
    err.textContent = message || "";
    $("#token").focus();
    return;
  }
  if (!me) {
    const problem = await signIn(token());
    if (problem) {
      sessionStorage.removeItem(TOKEN_KEY);
      return route(problem);
    }
  }
  showSession();
  const path = location.pathname.replace(/^\/ui\/?/, "");
  if (path.startsWith("event/")) {
    const id = decodeURIComponent(path.slice(6));
    // Opened from the timeline: a panel over it; opened directly: a page.
    const over = timelineShown;
    if (over) show("timeline", "detail"); else show("detail");
    $("#detail").classList.toggle("page", !over);
    return openDetail(id);
  }
  if (path === "overview") { stopLive(); show("overview"); return loadOverview(); }
  if (path === "dead-letters") { stopLive(); show("dead-letters"); return loadDeadLetters(true); }
  show("timeline");
  return loadTimeline();
}

// ---------------------------------------------------------------- timeline
let timelineShown = false;
let timelineKey = null;
let walk = null;
let selected = -1;

/** The `/audit` query of the page's URL (relative ranges end now). */
function timelineQuery(params, forStream = false) {
  const q = new URLSearchParams();
  for (const f of FILTERS) if (params.get(f)) q.set(f, params.get(f));
  const range = params.get("range") || (params.get("since") || params.get("until") ? "custom" : "24h");
  if (range === "custom") {
    if (params.get("since")) q.set("since", params.get("since"));
    if (params.get("until")) q.set("until", params.get("until"));
  } else if (RANGES[range] && !forStream) {
    q.set("since", new Date(Date.now() - RANGES[range]).toISOString());
  }
  return { q, range };
}

function fillFilters(form, params, range) {
  for (const f of FILTERS) form.elements[f].value = params.get(f) || "";
  form.elements.range.value = range;
  const local = (iso) => {
    if (!iso) return "";
    const d = new Date(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  };
  form.elements.since.value = local(params.get("since"));
  form.elements.until.value = local(params.get("until"));
  $(".custom", form).hidden = range !== "custom";
  form.elements.live.checked = params.get("live") === "1" && range !== "custom";
  form.elements.live.disabled = range === "custom";
}

async function loadTimeline() {
  timelineShown = true;
  const params = new URLSearchParams(location.search);
  const { q, range } = timelineQuery(params);
  const key = location.search;
  if (key === timelineKey && walk) return; // back from a detail: keep the place
  timelineKey = key;
  const form = $("#filters");
  fillFilters(form, params, range);
  // Not awaited: the rows do not wait for the source list.
  fillSources(form.elements.source, params.get("source"));
  stopLive();
  $("#events tbody").replaceChildren();
  selected = -1;
  walk = { q, next: null, done: false, loading: false, seen: new Set(), fresh: 0 };
  $("#timeline-end").textContent = "";
  if (form.elements.live.checked) await startLive(params);
  await loadPage();
}

async function loadPage() {
  const w = walk;
  if (!w || w.done || w.loading) return;
  w.loading = true;
  const q = new URLSearchParams(w.q);
  q.set("limit", PAGE);
  if (w.next) q.set("cursor", w.next);
  try {
    const page = await apiJson(`/audit?${q}`);
    if (w !== walk) return;
    const body = $("#events tbody");
    for (const r of page.records) {
      if (w.seen.has(r.id)) continue;
      w.seen.add(r.id);
      body.append(row(r));
    }
    w.next = page.next;
    w.done = !page.next;
    const n = body.children.length;
    $("#timeline-end").textContent = w.done
      ? (n ? `${n} events; that is all.` : emptyMessage())
      : "";
  } catch (e) {
    $("#timeline-end").textContent = `Could not load events: ${e.message}`;
  } finally {
    w.loading = false;
  }
  // A short page may not fill the screen: keep going while the end shows.
  if (!w.done && w === walk && endInView()) loadPage();
}

function emptyMessage() {
  const range = $("#filters").elements.range.value;
  return range !== "all" && range !== "custom" ? "No events in this range; try a longer one." : "No events match.";
}

function endInView() {
  return $("#timeline-end").getBoundingClientRect().top < window.innerHeight + 400;
}

function row(r) {
  const actor = r.actor.name || r.actor.email || r.actor.id || "";
  const target = [r.target.type, r.target.name || r.target.id].filter(Boolean).join(" ");
  return el("tr", { "data-id": r.id, onclick: () => openFromTimeline(r.id) },
    el("td", {}, timeCell(r.at)),
    el("td", {}, sourceChip(r.source)),
    el("td", { class: "mono", text: r.action }),
    el("td", {}, outcomeBadge(r.outcome)),
    el("td", { title: [r.actor.id, r.actor.name, r.actor.email].filter(Boolean).join(" · "), text: actor }),
    el("td", { class: "mono", text: r.ip || "" }),
    el("td", { title: target, text: target }),
    el("td", { text: r.tenant || "" }));
}

function openFromTimeline(id) {
  go(`/ui/event/${encodeURIComponent(id)}${location.search}`);
}

/** Fills a source list from the sources the store knows (`latest`), once. */
async function fillSources(select, current, stats) {
  if (select.options.length <= 1) {
    try {
      // A one-minute range: the source list comes with it at no counting cost.
      const known = stats || (await apiJson(`/audit/stats?since=${new Date(Date.now() - 60e3).toISOString()}`));
      for (const s of known.sources) if (![...select.options].some((o) => o.value === s.source)) select.append(el("option", { text: s.source }));
    } catch (_) { /* the list stays "any" */ }
  }
  if (current && ![...select.options].some((o) => o.value === current)) select.append(el("option", { text: current }));
  select.value = current || "";
}

function applyFilters(e) {
  e.preventDefault();
  const form = $("#filters");
  const p = new URLSearchParams();
  for (const f of FILTERS) {
    const v = form.elements[f].value.trim();
    if (v) p.set(f, v);
  }
  const range = form.elements.range.value;
  if (range === "custom") {
    const iso = (v) => (v ? new Date(v).toISOString().replace(".000Z", "Z") : null);
    if (iso(form.elements.since.value)) p.set("since", iso(form.elements.since.value));
    if (iso(form.elements.until.value)) p.set("until", iso(form.elements.until.value));
    p.set("range", "custom");
  } else if (range !== "24h") p.set("range", range);
  if (form.elements.live.checked && range !== "custom") p.set("live", "1");
  go(`/ui/${p.toString() ? "?" + p : ""}`);
}

// ---------------------------------------------------------------- live mode
let live = null;

function stopLive() {
  if (live) live.abort.abort();
  live = null;
  $("#live-status").textContent = "";
  $("#new-events").hidden = true;
}

/** Opens the stream; resolves once it is open, so the first page that
 * follows cannot miss a commit made in between (repeats are dropped). */
function startLive(params) {
  const { q } = timelineQuery(params, true);
  const state = { abort: new AbortController(), last: null };
  live = state;
  let opened;
  const ready = new Promise((resolve) => { opened = resolve; });
  (async () => {
    while (live === state) {
      try {
        const headers = { Authorization: `Bearer ${token()}` };
        if (state.last) headers["Last-Event-ID"] = state.last;
        const response = await fetch(`/audit/stream?${q}`, { headers, signal: state.abort.signal });
        if (response.status === 401) { signOut("Signed out: the token was refused"); return; }
        if (!response.ok) throw new Error(`${response.status}`);
        $("#live-status").textContent = "Live: new events appear as they are stored.";
        opened();
        await readEvents(response.body, state);
      } catch (e) {
        if (state.abort.signal.aborted) return;
        $("#live-status").textContent = "Live: reconnecting…";
      }
      opened();
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  return Promise.race([ready, new Promise((r) => setTimeout(r, 3000))]);
}

async function readEvents(stream, state) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { type: "message", data: [], id: null };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const at = line.indexOf(":");
        const name = at < 0 ? line : line.slice(0, at);
        const val = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
        if (name === "event") event.type = val;
        else if (name === "data") event.data.push(val);
        else if (name === "id") event.id = val;
      }
      if (event.id) state.last = event.id;
      if (event.type === "record" && live === state) addLive(JSON.parse(event.data.join("\n")));
    }
  }
}

function addLive(r) {
  const w = walk;
  if (!w || w.seen.has(r.id)) return;
  w.seen.add(r.id);
  const body = $("#events tbody");
  const tr = row(r);
  tr.classList.add("fresh");
  // Keep the reader's place: rows added above move the page by their height.
  const before = document.documentElement.scrollHeight;
  body.prepend(tr);
  if (selected >= 0) selected++;
  if (window.scrollY > 0) {
    window.scrollBy(0, document.documentElement.scrollHeight - before);
    w.fresh++;
    const pill = $("#new-events");
    pill.hidden = false;
    pill.textContent = `${w.fresh} new event${w.fresh > 1 ? "s" : ""} above`;
  }
}

// ---------------------------------------------------------------- keyboard
function rows() { return [...$("#events tbody").children]; }
function select(n) {
  const all = rows();
  if (!all.length) return;
  selected = Math.max(0, Math.min(all.length - 1, n));
  all.forEach((r, i) => r.classList.toggle("selected", i === selected));
  all[selected].scrollIntoView({ block: "nearest" });
  if (selected > all.length - 10) loadPage();
}

function onKey(e) {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (e.key === "Escape") {
    if (!$("#detail").hidden) { closeDetail(); e.preventDefault(); }
    else if (typing) document.activeElement.blur();
    return;
  }
  if (typing || e.ctrlKey || e.metaKey || e.altKey || $("#timeline").hidden) return;
  if (e.key === "/") { e.preventDefault(); $("#filters").elements.q.focus(); }
  else if (e.key === "j") select(selected + 1);
  else if (e.key === "k") select(selected - 1);
  else if (e.key === "Enter" && selected >= 0) openFromTimeline(rows()[selected].dataset.id);
}

// ---------------------------------------------------------------- detail
function closeDetail() {
  if (timelineShown && history.length > 1) history.back();
  else go(`/ui/${location.search}`);
}

async function openDetail(id) {
  const panel = $("#detail");
  panel.replaceChildren(el("p", { class: "status", text: "Loading…" }));
  let record;
  try {
    record = parseLossless(await api(`/audit/${encodeURIComponent(id)}`));
  } catch (e) {
    panel.replaceChildren(el("button", { type: "button", class: "close", text: "Close", onclick: closeDetail }),
      el("p", { class: "error", text: e.status === 404 ? "No such event (or not one you may read)." : e.message }));
    return;
  }
  const r = plain(record);
  const metadata = field(record, "metadata");
  const original = field(metadata, "original");
  const sender = plain(field(metadata, "sender"));
  const at = new Date(r.at);
  const around = (ms) => new Date(at.getTime() + ms).toISOString().replace(".000Z", "Z");
  // The most specific key: an e-mail or login names one person across sources, a bare id may not.
  const actorKey = r.actor.email || r.actor.name || r.actor.id;
  const pivot = (label, query, dataName) => el("a", { href: `/ui/?${new URLSearchParams(query)}`, "data-pivot": dataName, text: label,
    onclick: (e) => { e.preventDefault(); timelineKey = null; go(e.target.getAttribute("href")); } });
  const pivots = el("div", { class: "pivots" },
    actorKey ? pivot(`Same actor (${actorKey})`, { actor: actorKey, range: "all" }, "actor") : null,
    r.ip ? pivot(`Same IP (${r.ip})`, { ip: r.ip, range: "all" }, "ip") : null,
    pivot("±5 minutes around this event", { since: around(-300e3), until: around(300e3), range: "custom" }, "around"));
  const rows = [
    ["Id", r.id], ["Source", r.source], ["Action", r.action], ["Outcome", r.outcome],
    ["Time", `${localTime(r.at)} (local) · ${r.at} (UTC)`], ["Received", r.receivedAt],
    ["Actor id", r.actor.id], ["Actor name", r.actor.name], ["Actor e-mail", r.actor.email], ["IP", r.ip],
    ["Target type", r.target.type], ["Target id", r.target.id], ["Target name", r.target.name],
    ["Tenant", r.tenant], ["External id", r.externalId], ["Mapper", r.mapper], ["Sender", sender],
  ];
  const dl = el("dl", {});
  for (const [name, value] of rows) {
    if (value === null || value === undefined || value === "") continue;
    const key = name.toLowerCase().replace(/[^a-z]+/g, "-");
    dl.append(el("dt", { text: name }), el("dd", { "data-field": key }, String(value), copyButton(String(value))));
  }
  const originalText = original === undefined ? "" : prettyText(original);
  panel.replaceChildren(
    el("button", { type: "button", class: "close", text: "Close (Esc)", onclick: closeDetail }),
    el("h2", {}, outcomeBadge(r.outcome), " ", el("span", { class: "mono", text: r.action })),
    pivots,
    dl,
    el("h3", {}, "Original event", original === undefined ? null : copyButton(originalText, "copy JSON")),
    original === undefined
      ? el("p", { class: "status", text: "This record keeps no original event." })
      : el("pre", { class: "json", id: "original" }, ...pretty(original)),
    el("details", {}, el("summary", { text: "All stored metadata" }), el("pre", { class: "json" }, ...pretty(metadata ?? null))));
}

// ---------------------------------------------------------------- overview
async function loadOverview() {
  timelineShown = false;
  const params = new URLSearchParams(location.search);
  const range = RANGES[params.get("range")] && params.get("range") !== "15m" ? params.get("range") : "24h";
  const form = $("#overview-filters");
  form.elements.range.value = range;
  const until = new Date();
  const since = new Date(until.getTime() - RANGES[range]);
  const q = new URLSearchParams({ since: since.toISOString(), until: until.toISOString() });
  if (params.get("source")) q.set("source", params.get("source"));
  let stats;
  try {
    stats = await apiJson(`/audit/stats?${q}`);
  } catch (e) {
    $("#chart").replaceChildren(el("p", { class: "error", text: `Could not load the counts: ${e.message}` }));
    return;
  }
  // The answer lists every source unless it was asked about one.
  fillSources(form.elements.source, params.get("source"), params.get("source") ? undefined : stats);
  $("#overview-total").textContent = `${stats.total} events`;
  $("#overview-total").dataset.total = stats.total;
  drawChart(stats, since, until);
  const body = $("#sources tbody");
  body.replaceChildren();
  for (const s of stats.sources) {
    const timeline = `/ui/?source=${encodeURIComponent(s.source)}&range=${range}`;
    const lag = s.lag ? (s.lag.tailBehindBytes !== undefined ? `${s.lag.tailBehindBytes} bytes behind`
      : s.lag.pollLagSecs !== undefined ? `${s.lag.pollLagSecs} s behind` : "—") : "—";
    // Only polled and tailed sources report progress; a webhook source has none to report.
    const health = s.health ? (s.health.wedged ? el("span", { class: "wedged", text: s.health.stopped || `no success for ${s.health.secondsWithoutSuccess} s` }) : "ok") : "—";
    body.append(el("tr", { "data-source": s.source },
      el("td", {}, el("a", { href: timeline, text: s.source })),
      el("td", { "data-count": s.count, text: s.count }),
      el("td", {}, s.failures ? el("a", { href: `${timeline}&outcome=failure`, text: s.failures }) : "0"),
      el("td", {}, s.latestAt ? el("time", { datetime: s.latestAt, title: `${s.latestAt} (UTC)`, text: ago(s.latestAt) }) : "never"),
      el("td", { text: lag }),
      el("td", {}, s.deadLetters === undefined ? "" : s.deadLetters ? el("a", { href: `/ui/dead-letters?source=${encodeURIComponent(s.source)}`, text: s.deadLetters }) : "0"),
      el("td", { title: `${s.unrecognised} of ${s.count} on a catch-all verb`, class: s.drift > 0.05 ? "wedged" : "",
        text: `${(100 * s.drift).toFixed(1)} %` }),
      el("td", {}, health)));
  }
}

function drawChart(stats, since, until) {
  const step = stats.bucketSecs * 1000;
  const first = Math.floor(since.getTime() / step) * step;
  const n = Math.max(1, Math.ceil((until.getTime() - first) / step));
  const bars = Array.from({ length: n }, () => ({ success: 0, failure: 0, unknown: 0 }));
  for (const b of stats.buckets) {
    const i = Math.floor((new Date(b.start).getTime() - first) / step);
    if (i >= 0 && i < n) bars[i][b.outcome in bars[i] ? b.outcome : "unknown"] += b.count;
  }
  const max = Math.max(1, ...bars.map((b) => b.success + b.failure + b.unknown));
  const W = 1000, H = 220, left = 40, bottom = 20, w = (W - left) / n;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `events per ${stats.bucketSecs >= 3600 ? "hour" : "minute"} by outcome`);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, class: "axis" });
  add("text", { x: 2, y: 10 }, String(max));
  add("text", { x: 2, y: H - bottom }, "0");
  bars.forEach((b, i) => {
    let y = H - bottom;
    const start = new Date(first + i * step);
    for (const o of ["success", "unknown", "failure"]) {
      if (!b[o]) continue;
      const h = ((H - bottom - 14) * b[o]) / max;
      y -= h;
      const rect = add("rect", { x: left + i * w + 0.5, y, width: Math.max(1, w - 1), height: h, class: o,
        "data-start": start.toISOString(), "data-count": b[o] });
      const title = document.createElementNS(ns, "title");
      title.textContent = `${localTime(start.toISOString())}: ${b[o]} ${o}`;
      rect.append(title);
      rect.addEventListener("click", () => {
        const p = new URLSearchParams({ since: start.toISOString(), until: new Date(start.getTime() + step).toISOString(), range: "custom", outcome: o });
        go(`/ui/?${p}`);
      });
    }
  });
  const labels = Math.min(n, 8);
  for (let k = 0; k < labels; k++) {
    const i = Math.floor((k * n) / labels);
    const d = new Date(first + i * step);
    add("text", { x: left + i * w, y: H - 6 }, stats.bucketSecs >= 86400 ? `${d.getMonth() + 1}-${d.getDate()}` : `${pad(d.getHours())}:${pad(d.getMinutes())}`);
  }
  $("#chart").replaceChildren(svg);
}

// ---------------------------------------------------------------- dead letters
let letters = null;

async function loadDeadLetters(reset) {
  timelineShown = false;
  const params = new URLSearchParams(location.search);
  const select = $("#dl-source");
  await fillSources(select, params.get("source"));
  if (reset) { letters = { after: null }; $("#dl-list").replaceChildren(); }
  const q = new URLSearchParams({ limit: 50 });
  if (params.get("source")) q.set("source", params.get("source"));
  if (letters.after) q.set("after", letters.after);
  try {
    const page = await apiJson(`/admin/dead-letters?${q}`);
    for (const l of page.letters) $("#dl-list").append(letterCard(l));
    letters.after = page.next;
    $("#dl-more").hidden = !page.next;
    if (!$("#dl-list").children.length) $("#dl-list").append(el("p", { class: "status", text: "No dead letters." }));
  } catch (e) {
    $("#dl-list").append(el("p", { class: "error", text: `Could not load dead letters: ${e.message}` }));
  }
}

function letterCard(l) {
  const card = el("article", { class: "letter", "data-id": l.id },
    el("header", {},
      timeCell(l.receivedAt), sourceChip(l.source),
      el("span", { class: "mono", text: l.transport }),
      el("span", { text: l.mapper ? `mapper ${l.mapper}` : "no mapper" }),
      el("span", { text: `${l.size} bytes${l.bodyTruncated ? " (first 64 KiB shown)" : ""}` }),
      el("button", { type: "button", text: "Re-map", onclick: () => replayOne(l.id, card) })),
    el("p", { class: "err", text: l.error }),
    el("pre", { class: "json", text: l.body }));
  return card;
}

async function replayOne(id, card) {
  const status = el("span", { class: "status", text: "re-mapping…" });
  $("header", card).append(status);
  try {
    const r = await apiJson(`/admin/replay?letter=${encodeURIComponent(id)}`, { method: "POST" });
    if (r.resolved) { status.textContent = `mapped: ${r.inserted} new, ${r.duplicates} already stored`; card.style.opacity = 0.5; }
    else status.textContent = "still does not map";
  } catch (e) { status.textContent = e.message; }
}

async function replayAll() {
  const source = new URLSearchParams(location.search).get("source");
  const bar = $("#dl-progress"), status = $("#dl-status"), button = $("#dl-replay-all");
  button.disabled = true;
  bar.hidden = false;
  const total = { letters: 0, resolved: 0, stillFailing: 0, inserted: 0 };
  let after = null;
  try {
    for (;;) {
      const q = new URLSearchParams({ limit: 100 });
      if (source) q.set("source", source);
      if (after) q.set("after", after);
      const r = await apiJson(`/admin/replay?${q}`, { method: "POST" });
      for (const k of Object.keys(total)) total[k] += r[k];
      status.textContent = `${total.letters} looked at: ${total.resolved} mapped (${total.inserted} records), ${total.stillFailing} still failing`;
      if (!r.lastLetter || r.letters < 100) break;
      after = r.lastLetter;
    }
  } catch (e) {
    status.textContent += ` · stopped: ${e.message}`;
  }
  bar.hidden = true;
  button.disabled = false;
  loadDeadLetters(true);
}

// ---------------------------------------------------------------- start
document.addEventListener("DOMContentLoaded", () => {
  $("#token-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const problem = await signIn($("#token").value.trim());
    $("#token").value = "";
    route(problem);
  });
  $("#sign-out").addEventListener("click", () => signOut());
  $("#filters").addEventListener("submit", applyFilters);
  $("#filters").elements.range.addEventListener("change", (e) => {
    $(".custom", $("#filters")).hidden = e.target.value !== "custom";
    if (e.target.value !== "custom") applyFilters(e);
  });
  for (const name of ["source", "outcome", "live"]) $("#filters").elements[name].addEventListener("change", applyFilters);
  $("#overview-filters").addEventListener("change", () => {
    const f = $("#overview-filters");
    const p = new URLSearchParams({ range: f.elements.range.value });
    if (f.elements.source.value) p.set("source", f.elements.source.value);
    go(`/ui/overview?${p}`);
  });
  $("#dl-source").addEventListener("change", (e) => go(`/ui/dead-letters${e.target.value ? "?source=" + encodeURIComponent(e.target.value) : ""}`));
  $("#dl-more").addEventListener("click", () => loadDeadLetters(false));
  $("#dl-replay-all").addEventListener("click", replayAll);
  $("#new-events").addEventListener("click", () => { window.scrollTo(0, 0); });
  document.addEventListener("click", (e) => {
    const a = e.target.closest("a");
    if (!a || e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith("/ui")) return;
    e.preventDefault();
    if (!url.pathname.startsWith("/ui/event/")) timelineKey = null;
    go(url.pathname + url.search);
  });
  window.addEventListener("popstate", () => route());
  window.addEventListener("scroll", () => {
    if (!$("#timeline").hidden && endInView()) loadPage();
    if (window.scrollY === 0 && walk) { walk.fresh = 0; $("#new-events").hidden = true; }
  }, { passive: true });
  document.addEventListener("keydown", onKey);
  offerIdentityProvider();
  route();
});
