// The shopmesh operator console: draws the page the path names from the admin API.
// No framework: a page is a function that fetches and renders; elements are built with
// h() (text is always set as text, never parsed as HTML). The session cookie goes with
// every same-origin request; state-changing ones also carry the session's CSRF token.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
let timers = [];
// The host's check of every event (plugins::GUARD): it has dead letters, not versions.
const GUARD = "shopmesh-guard";

// ---------- helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

// A value as one segment of an API path: a name or id from the page's URL must not add
// segments or a query (`points/disable?` would call another operation).
const seg = encodeURIComponent;

// Calls the admin API. 401 means the session is gone: back to the login page. Any other
// failure is thrown with the API's own code and message.
async function api(method, path, body, contentType) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = CSRF;
  let payload;
  if (body !== undefined) {
    if (contentType) { headers["Content-Type"] = contentType; payload = body; }
    else { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  }
  const resp = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  if (resp.status === 401) { location.assign("/console/login"); throw new ApiError(401, "SHOP_UNAUTHORIZED", "logged out"); }
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    throw new ApiError(resp.status, json && json.code || "HTTP_" + resp.status, json && json.message || text || resp.statusText);
  }
  return json;
}

function showError(e) {
  const box = document.getElementById("error");
  if (!e) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = e instanceof ApiError ? `${e.code}: ${e.message}` : String(e.message || e);
}

function notice(text) {
  const el = document.getElementById("notice");
  if (el) el.textContent = text;
}

// Runs an action the operator confirmed; shows the API's error if it fails.
async function act(question, fn) {
  if (!window.confirm(question)) return false;
  showError(null);
  try { await fn(); return true; } catch (e) { showError(e); return false; }
}

function every(ms, fn) {
  const run = async () => { try { await fn(); } catch (e) { showError(e); } };
  timers.push(setInterval(run, ms));
}

// Whether NATS subject filter `filter` (`*` one token, `>` the rest) takes `subject`.
function matches(filter, subject) {
  const f = filter.split("."), s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return s.length > i;
    if (i >= s.length || (f[i] !== "*" && f[i] !== s[i])) return false;
  }
  return f.length === s.length;
}

const fmtTime = (t) => t ? new Date(t).toLocaleString() : "—";
const fmtNum = (n, d = 0) => n === undefined || n === null ? "—" : Number(n).toFixed(d);
const short = (s) => s ? s.slice(0, 12) + "…" : "—";
const badge = (text, kind) => h("span", { class: "badge " + (kind || "") }, text);
const set = (id, ...children) => { const el = document.getElementById(id); if (el) el.replaceChildren(...children.flat()); };
const page = (...children) => document.getElementById("page").replaceChildren(...children.flat());

function effectText(e) {
  const rest = Object.entries(e).filter(([k]) => k !== "kind").map(([k, v]) => `${k} ${v}`);
  return [e.kind, ...rest].join(" ");
}
const effectsText = (list) => list && list.length ? list.map(effectText).join("; ") : "(none)";

// One side of a replay's diff: `list`'s effects, with what differs from `other`'s effect at
// the same place marked (a field of another value; a whole effect of another kind, or one
// the other side does not have), so a changed row says where it changed.
function effectsDiff(list, other) {
  if (!list || !list.length) return "(none)";
  return list.map((e, i) => {
    const o = other && other[i];
    if (!o || o.kind !== e.kind) return [i ? "; " : "", h("mark", {}, effectText(e))];
    const fields = Object.entries(e).filter(([k]) => k !== "kind")
      .map(([k, v]) => [" ", String(o[k]) === String(v) ? `${k} ${v}` : h("mark", {}, `${k} ${v}`)]);
    return [i ? "; " : "", e.kind, fields];
  });
}

function table(columns, rows, attrs) {
  return h("table", attrs || {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.endsWith("#") ? "num" : "" }, c.replace(/#$/, ""))))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "nothing here"))));
}

// ---------- overview ----------

const COLORS = ["#2f5bea", "#c4320a", "#067647", "#b54708", "#7a5af8", "#0e9384", "#dd2590", "#475467"];

function chart(plugins, sampleSeconds) {
  const W = 1100, H = 170, P = 30;
  // Each plugin's events handled (solid) and failed attempts (dashed, only where any).
  const series = plugins.flatMap((p, i) => [{ points: p.recent_rates || [], i },
    ...((p.recent_failure_rates || []).some((v) => v > 0) ? [{ points: p.recent_failure_rates, i, dashed: true }] : [])]);
  const n = Math.max(2, ...series.map((s) => s.points.length));
  const max = Math.max(1, ...series.flatMap((s) => s.points));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "xMinYMin meet");
  svg.setAttribute("id", "rate-chart");
  const line = (x1, y1, x2, y2, color) => {
    const l = document.createElementNS(ns, "line");
    Object.entries({ x1, y1, x2, y2, stroke: color, "stroke-width": 1 }).forEach(([k, v]) => l.setAttribute(k, v));
    svg.append(l);
  };
  const text = (x, y, s, anchor) => {
    const t = document.createElementNS(ns, "text");
    Object.entries({ x, y, "font-size": 10, fill: "#667085", "text-anchor": anchor || "start" }).forEach(([k, v]) => t.setAttribute(k, v));
    t.textContent = s; svg.append(t);
  };
  line(P, H - P, W - 4, H - P, "#d0d5dd");
  line(P, 4, P, H - P, "#d0d5dd");
  text(P - 4, 12, fmtNum(max, max < 10 ? 1 : 0), "end");
  text(P - 4, H - P, "0", "end");
  text(P, H - 8, `${Math.round((n - 1) * sampleSeconds / 60 * 10) / 10} min ago`);
  text(W - 4, H - 8, "now", "end");
  series.forEach(({ points: s, i, dashed }) => {
    if (s.length < 2) return;
    const pts = s.map((v, j) => {
      const x = P + (W - 4 - P) * (n - s.length + j) / (n - 1);
      const y = H - P - (H - P - 4) * v / max;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const pl = document.createElementNS(ns, "polyline");
    pl.setAttribute("points", pts.join(" "));
    pl.setAttribute("fill", "none");
    pl.setAttribute("stroke", COLORS[i % COLORS.length]);
    pl.setAttribute("stroke-width", 2);
    if (dashed) { pl.setAttribute("stroke-dasharray", "6 4"); pl.setAttribute("class", "failures"); }
    svg.append(pl);
  });
  const legend = h("div", { class: "legend" }, plugins.map((p, i) => {
    const dot = h("b", {}, "■ ");
    dot.style.color = COLORS[i % COLORS.length];
    return h("span", {}, dot, p.name);
  }));
  return h("div", { class: "chart" }, h("div", { class: "muted" }, "events handled per second on this host; dashed: failed attempts per second"), svg, legend);
}

async function overview() {
  page(h("h1", {}, "Overview"), h("div", { id: "cards", class: "cards" }), h("div", { id: "chart" }),
    h("h2", {}, "Plugins"), h("div", { id: "plugins" }),
    h("h2", {}, "Hosts"), h("p", { class: "muted" }, "Every host of the fleet and what it runs; a version other than this host's is marked."), h("div", { id: "hosts" }));
  const draw = async () => {
    const o = await api("GET", "/api/admin/overview");
    set("cards",
      h("div", { class: "card" }, h("div", { class: "muted" }, "Plugins"), h("div", { class: "big" }, o.plugins.length)),
      h("div", { class: "card", id: "outbox" }, h("div", { class: "muted" }, "Outbox backlog"),
        h("div", { class: "big" }, o.outbox_unsent ?? "—"), h("div", { class: "muted" }, `oldest ${fmtNum(o.outbox_oldest_unsent_age_seconds, 1)} s`)),
      h("div", { class: "card" }, h("div", { class: "muted" }, "Open dead letters"),
        h("div", { class: "big" }, h("a", { href: "/console/dead-letters" }, o.dead_letters_open ?? "—"))),
      // Without NATS nothing reaches this host's plugins and the fleet cannot be seen: say
      // so, rather than show quiet plugins and no hosts.
      h("div", { class: "card", id: "nats" }, h("div", { class: "muted" }, "NATS"),
        h("div", { class: "big" }, o.nats_connected ? badge("connected", "good") : badge("not connected", "bad")),
        o.nats_connected ? "" : h("div", { class: "muted" }, "no events reach this host's plugins; the fleet cannot be seen")));
    set("chart", chart(o.plugins, o.sample_seconds));
    // Events/s count events handled; a failing plugin's attempts are failures/s, and the
    // row says "failing" while any host's last sample had one.
    set("plugins", table(["Plugin", "Active version", "State", "Events/s here#", "Events/s fleet#", "Failures/s fleet#", "Waiting#", "Attempts here#", "Failures here#", "Dead letters#"],
      o.plugins.map((p) => h("tr", { dataset: { plugin: p.name }, class: p.fleet_failures_per_second > 0 ? "failing" : "" },
        h("td", {}, h("a", { href: `/console/plugins/${encodeURIComponent(p.name)}` }, p.name)),
        h("td", {}, p.active_version || (p.refused ? "—" : badge("staged only", "warn"))),
        h("td", {}, p.enabled ? badge("enabled", "good") : badge("disabled", "bad"),
          p.fleet_failures_per_second > 0 ? [" ", badge("failing", "bad")] : "",
          p.refused ? [" ", h("span", { class: "badge bad", title: p.refused }, "refused here")] : ""),
        h("td", { class: "num" }, fmtNum(p.events_per_second, 1)),
        h("td", { class: "num" }, fmtNum(p.fleet_events_per_second, 1)),
        h("td", { class: "num failures" }, fmtNum(p.fleet_failures_per_second, 1)),
        // Not received yet, or delivered and not acknowledged: a paused plugin's events wait
        // in the second kind, handed back every half second.
        h("td", { class: "num" }, p.pending === undefined ? "?" : p.pending + (p.ack_pending ?? 0)),
        h("td", { class: "num" }, p.invocations),
        h("td", { class: "num" }, p.failures),
        h("td", { class: "num" }, p.dead_letters_open ? h("a", { href: `/console/dead-letters?plugin=${encodeURIComponent(p.name)}` }, p.dead_letters_open) : (p.dead_letters_open ?? "—")))),
      { id: "plugin-table" }),
      h("p", { class: "muted" }, "Attempts and failures here: this host's since it started (a retried event counts each time); waiting and dead letters: the fleet's."));
    const here = Object.fromEntries(o.plugins.map((p) => [p.name, p.active_version]));
    if (!o.nats_connected) { set("hosts", h("p", { class: "error", id: "no-fleet" }, "This host is not connected to NATS: the fleet's roll call cannot be read.")); return; }
    set("hosts", table(["Host", "Machine", "API", "Up since", "Last seen", "Events/s#", "Runs"],
      o.hosts.map((x) => h("tr", { dataset: { host: x.host } },
        h("td", {}, x.host), h("td", {}, x.hostname), h("td", {}, x.address), h("td", {}, fmtTime(x.started_at)), h("td", {}, fmtTime(x.seen_at)),
        h("td", { class: "num" }, fmtNum(x.plugins.reduce((sum, p) => sum + p.events_per_second, 0), 1)),
        h("td", {}, x.plugins.length ? x.plugins.map((p) => [h("span", {
          class: "badge " + (p.refused ? "bad" : p.active_version !== here[p.name] ? "warn" : p.enabled ? "" : "bad"),
          dataset: { plugin: p.name },
        }, `${p.name} ${p.active_version || (p.refused ? "refused" : "staged")}${p.enabled ? "" : " (disabled)"}`), " "]) : h("span", { class: "muted" }, "no plugins")))),
      { id: "host-table" }));
  };
  await draw();
  every(2000, draw);
}

// ---------- plugin ----------

async function plugin(name) {
  const draw = async () => {
    const all = await api("GET", "/api/admin/plugins");
    const p = all.find((x) => x.name === name);
    if (!p && name === GUARD) {
      // Named in the dead letters and the metrics, but no component: the host's own check.
      page(h("h1", {}, "Plugin ", h("code", {}, name)),
        h("p", { id: "guard" }, "The host's own check of every event on ", h("code", {}, "shop.>"),
          ": a malformed event is dead-lettered under this name, also on a subject no plugin reads. It runs no component, so it has no versions to upload or activate. ",
          h("a", { href: `/console/dead-letters?plugin=${GUARD}` }, "Its dead letters")));
      return;
    }
    if (!p) {
      page(h("h1", {}, "Plugin ", h("code", {}, name)), h("p", { class: "muted" }, "Not on this host. ", h("a", { href: "/console" }, "Back to the overview")));
      throw new ApiError(404, "SHOP_PLUGIN_NOT_FOUND", `no plugin ${name}`);
    }
    const switchButton = p.enabled
      ? h("button", { id: "disable", class: "danger", onclick: () => act(`Disable ${name} on every host? Its events wait in JetStream.`, async () => { await api("POST", `/api/admin/plugins/${seg(name)}/disable`); await draw(); notice(`${name} disabled`); }) }, "Disable")
      : h("button", { id: "enable", class: "primary", onclick: () => act(`Enable ${name} on every host?`, async () => { await api("POST", `/api/admin/plugins/${seg(name)}/enable`); await draw(); notice(`${name} enabled`); }) }, "Enable");
    // Kept before the active one (the list is oldest first): going there is a rollback.
    const activeAt = (p.versions || []).findIndex((v) => v.state === "active");
    const verb = (v, i) => (i < activeAt ? "Roll back to this" : "Activate");
    const versions = (p.versions || []).map((v, i) => [v, i]).reverse().map(([v, i]) => h("tr", { dataset: { version: v.version, state: v.state } },
      h("td", {}, h("code", {}, v.version)),
      h("td", {}, badge(v.state, v.state === "active" ? "good" : v.state === "staged" ? "warn" : "")),
      h("td", {}, h("code", { title: v.sha256 }, short(v.sha256))),
      h("td", {}, fmtTime(v.kept_at)),
      h("td", {}, fmtTime(v.activated_at)),
      h("td", {}, v.state === "active" ? "" : h("button", {
        class: "activate", dataset: { version: v.version },
        onclick: () => act(`${verb(v, i) === "Activate" ? "Activate" : "Roll back"} ${name} ${v.version} on every host?`, async () => {
          await api("POST", `/api/admin/plugins/${seg(name)}/activate`, { version: v.version });
          await draw();
          notice(`${name} ${v.version} is active`);
        }),
      }, verb(v, i)))));
    page(
      h("h1", {}, "Plugin ", h("code", {}, name)),
      h("p", { id: "notice", class: "muted" }),
      h("div", { class: "cards" },
        h("div", { class: "card" }, h("div", { class: "muted" }, "Active version"), h("div", { class: "big", id: "active-version" }, p.active_version || "—")),
        h("div", { class: "card" }, h("div", { class: "muted" }, "State"), h("div", { class: "big" }, p.enabled ? badge("enabled", "good") : badge("disabled", "bad"))),
        h("div", { class: "card" }, h("div", { class: "muted" }, "Attempts / failed on this host since it started"), h("div", { class: "big" }, `${p.invocations} / ${p.failures}`)),
        h("div", { class: "card" }, h("div", { class: "muted" }, "Activated"), h("div", {}, fmtTime(p.activated_at)))),
      h("p", {}, "Subjects: ", (p.subjects || []).join(", ") || "—", " · capabilities: ", (p.capabilities || []).join(", ") || "—",
        " · granted: ", (p.grants || []).join(", ") || "—",
        (p.revoked || []).length ? [" ", badge(`revoked: ${p.revoked.join(", ")} (its effects that need it are refused)`, "bad")] : ""),
      p.refused ? h("p", { class: "error", id: "refused" }, "This host refused a version it should run (it runs another, or none: its events wait for other hosts, or for a version here): ", p.refused) : "",
      h("p", {}, switchButton, " ",
        h("button", { id: "redrive-all", onclick: () => act(`Redrive every open dead letter of ${name}?`, async () => {
          const results = await api("POST", `/api/admin/plugins/${seg(name)}/redrive`);
          notice(redriveSummary(results));
        }) }, "Redrive its dead letters"), " ",
        h("a", { href: `/console/replay?plugin=${encodeURIComponent(name)}` }, "Replay…")),
      h("h2", {}, "Versions"),
      table(["Version", "State", "sha256", "Kept", "Last activated", ""], versions, { id: "versions" }),
      h("h2", {}, "Upload a version"),
      h("form", { id: "upload", class: "inline", onsubmit: (ev) => { ev.preventDefault(); upload(name, ev.target, draw); } },
        h("label", {}, "Component (.wasm)", h("input", { type: "file", name: "file", accept: ".wasm", required: true })),
        h("label", {}, "Then", h("select", { name: "activate" },
          h("option", { value: "false" }, "stage it (activate later)"),
          h("option", { value: "true" }, "activate it now"))),
        h("button", { type: "submit", class: "primary" }, "Upload")));
  };
  await draw();
}

async function upload(name, form, redraw) {
  const file = form.file.files[0];
  if (!file) return;
  const activate = form.activate.value === "true";
  await act(`${activate ? "Upload and activate" : "Stage"} ${file.name} as ${name} on every host?`, async () => {
    const bytes = await file.arrayBuffer();
    const p = await api("PUT", `/api/admin/plugins/${seg(name)}?activate=${activate}`, bytes, "application/octet-stream");
    await redraw();
    notice(activate ? `${name} ${p.active_version} uploaded and active` : `${file.name} staged`);
  });
}

// ---------- dead letters ----------

// What a redrive of many letters came to, counted by result: hundreds of letters with one
// reason read as one line, not hundreds of words.
function redriveSummary(results) {
  if (!results.length) return "redriven: none open";
  const counts = new Map();
  results.forEach((r) => counts.set(r.result, (counts.get(r.result) || 0) + 1));
  const by = [...counts].map(([result, n]) => `${n} × ${result}`).join("; ");
  return `redriven: ${results.filter((r) => r.closed).length} of ${results.length} closed (${by})`;
}

async function deadLetters() {
  const params = new URLSearchParams(location.search);
  const only = params.get("plugin") || "";
  // The open letters by default (what still needs someone); `?show=all` the closed ones too.
  // A letter acted on here, or named by `?id=` (a timeline's link), stays in view.
  const all = params.get("show") === "all";
  const named = params.get("id");
  const kept = new Set(named ? [named] : []);
  const plugins = await api("GET", "/api/admin/plugins");
  const names = [...new Set([...plugins.map((p) => p.name), GUARD])];
  const draw = async () => {
    const letters = await api("GET", "/api/admin/dead-letters" + (only ? `?plugin=${encodeURIComponent(only)}` : ""));
    const open = letters.filter((d) => d.state === "open").length;
    const listed = letters.filter((d) => all || d.state === "open" || kept.has(d.id));
    const others = new URLSearchParams(params);
    all ? others.delete("show") : others.set("show", "all");
    others.delete("id");
    const hidden = letters.length - listed.length;
    set("count", `${open} open, ${letters.length - open} closed${hidden ? ` (${hidden} not shown)` : ""} · `,
      h("a", { id: "show-toggle", href: `/console/dead-letters?${others}` }, all ? "show the open ones only" : "show the closed ones too"));
    set("letters", table(["Id", "Plugin", "Version", "Seq#", "Subject", "Reason", "Attempts#", "Dead-lettered", "Status", ""],
      // Newest first; the letter the link named first of all, with its buttons in view.
      listed.slice().reverse().sort((a, b) => (b.id === named) - (a.id === named)).map((d) => h("tr", { dataset: { id: d.id, plugin: d.plugin }, class: d.id === named ? "selected" : "" },
        h("td", {}, h("code", {}, d.id)),
        h("td", {}, d.plugin),
        h("td", {}, h("code", {}, d.plugin_version)),
        h("td", { class: "num" }, d.stream_seq ?? "—"),
        h("td", {}, d.subject),
        h("td", {}, d.reason),
        h("td", { class: "num" }, d.attempts),
        h("td", {}, fmtTime(d.created_at)),
        h("td", { class: "status" }, letterStatus(d)),
        h("td", {},
          h("button", { class: "view", onclick: () => view(d.id) }, "Event"), " ",
          d.state !== "open" ? "" : h("button", { class: "redrive primary", onclick: () => act(d.plugin === GUARD
            ? `Check dead letter ${d.id}'s event again (the guard refuses it while it is malformed)?`
            : `Redrive dead letter ${d.id} through ${d.plugin}'s active version?`, async () => {
            kept.add(d.id);
            const r = await api("POST", `/api/admin/dead-letters/${seg(d.id)}/redrive`);
            await draw();
            notice(`dead letter ${d.id}: ${r.result}`);
          }) }, "Redrive"), " ",
          d.state !== "open" ? "" : h("button", { class: "dismiss", onclick: () => act(`Dismiss dead letter ${d.id} without running its event?`, async () => {
            kept.add(d.id);
            const r = await api("POST", `/api/admin/dead-letters/${seg(d.id)}/dismiss`);
            await draw();
            notice(`dead letter ${d.id}: ${r.redrive_result}`);
          }) }, "Dismiss")))), { id: "letter-table" }));
  };
  const view = async (id) => {
    showError(null);
    try {
      const d = await api("GET", `/api/admin/dead-letters/${seg(id)}`);
      let shown = d.event, order = null;
      try {
        const event = JSON.parse(d.event);
        shown = JSON.stringify(event, null, 2);
        order = event.data && event.data.order_id;
      } catch (_) { /* not JSON: shown as it arrived */ }
      set("event", h("h2", {}, `Event of dead letter ${id}`),
        order ? h("p", {}, h("a", { id: "event-order", href: `/console/orders/${encodeURIComponent(order)}` }, `Order ${order}'s timeline`)) : "",
        h("pre", { id: "event-json" }, shown));
      // Shown above the list; brought into view from a row far down it.
      document.getElementById("event").scrollIntoView({ block: "nearest" });
    } catch (e) { showError(e); }
  };
  page(h("h1", {}, "Dead letters"), h("p", { id: "notice", class: "muted" }),
    h("form", { class: "inline", method: "get", action: "/console/dead-letters" },
      all ? h("input", { type: "hidden", name: "show", value: "all" }) : "",
      h("label", {}, "Plugin", h("select", { name: "plugin", onchange: (ev) => ev.target.form.submit() },
        h("option", { value: "" }, "all plugins"),
        names.map((n) => h("option", { value: n, selected: n === only }, n)))),
      only ? h("button", { type: "button", id: "redrive-plugin", onclick: () => act(`Redrive every open dead letter of ${only}?`, async () => {
        const results = await api("POST", `/api/admin/plugins/${seg(only)}/redrive`);
        results.forEach((r) => kept.add(r.id));
        await draw();
        notice(redriveSummary(results));
      }) }, `Redrive all of ${only}`) : ""),
    h("p", { id: "count", class: "muted" }), h("div", { id: "event" }), h("div", { id: "letters" }));
  await draw();
  if (named) await view(named);
}

// ---------- replay ----------

async function replayForm() {
  const params = new URLSearchParams(location.search);
  const plugins = await api("GET", "/api/admin/plugins");
  const replays = await api("GET", "/api/admin/replays");
  const chosen = params.get("plugin") || (plugins[0] && plugins[0].name) || "";
  const versionsOf = (name) => {
    const p = plugins.find((x) => x.name === name);
    return p ? p.versions.map((v) => h("option", { value: v.version, selected: v.state === "active" }, `${v.version} (${v.state})`)) : [];
  };
  const form = h("form", { id: "replay-form", class: "inline", onsubmit: (ev) => { ev.preventDefault(); start(ev.target); } },
    h("label", {}, "Plugin", h("select", { name: "plugin", onchange: (ev) => ev.target.form.version.replaceChildren(...versionsOf(ev.target.value)) },
      plugins.map((p) => h("option", { value: p.name, selected: p.name === chosen }, p.name)))),
    h("label", {}, "Version", h("select", { name: "version" }, versionsOf(chosen))),
    h("label", {}, "Mode", h("select", { name: "mode" }, h("option", { value: "dry-run" }, "dry-run (compare)"), h("option", { value: "apply" }, "apply"))),
    h("label", {}, "From seq", h("input", { name: "from_seq", type: "number", min: 1, placeholder: "first" })),
    h("label", {}, "To seq", h("input", { name: "to_seq", type: "number", min: 1, placeholder: "last" })),
    h("label", {}, "From time", h("input", { name: "from_time", type: "datetime-local", step: 1 })),
    h("label", {}, "To time", h("input", { name: "to_time", type: "datetime-local", step: 1 })),
    h("label", {}, "Subjects", h("input", { name: "subjects", placeholder: "all of the plugin's" })),
    h("label", {}, "Max rate (ev/s)", h("input", { name: "max_rate", type: "number", min: 1, placeholder: "unlimited" })),
    h("button", { type: "submit", class: "primary" }, "Start replay"));
  page(h("h1", {}, "Replay"), h("p", { class: "muted" }, "Run a range of the stream through one version: a dry-run compares its effects with those recorded and changes nothing."),
    form, h("h2", {}, "Replays"),
    table(["Id", "Plugin", "Version", "Mode", "State", "Processed#", "Result", "Started"],
      replays.map((r) => h("tr", {},
        h("td", {}, h("a", { href: `/console/replay/${r.replay_id}` }, r.replay_id)),
        h("td", {}, r.plugin), h("td", {}, r.version), h("td", {}, r.mode), h("td", {}, r.state),
        h("td", { class: "num" }, `${r.processed}/${r.total}`),
        h("td", { class: "result" }, outcomes(r).filter(([k, v]) => v > 0 || k === "failed").map(([k, v]) => `${k} ${v}`).join(" · ")),
        h("td", {}, fmtTime(r.started_at)))),
      { id: "replay-list" }));
}

// A replay's counts in the order the CLI prints them, those its mode can have: a dry-run
// compares (`regressed` among its failed), an apply applies or skips.
function outcomes(r) {
  const keys = r.mode === "apply" ? ["applied", "skipped", "failed"] : ["same", "changed", "new", "failed", "regressed"];
  return keys.map((k) => [k, r.summary[k]]);
}

async function start(form) {
  const body = { plugin: form.plugin.value, mode: form.mode.value };
  if (form.version.value) body.version = form.version.value;
  for (const k of ["from_seq", "to_seq", "max_rate"]) if (form[k].value !== "") body[k] = Number(form[k].value);
  for (const k of ["from_time", "to_time"]) if (form[k].value) body[k] = new Date(form[k].value).toISOString();
  const subjects = form.subjects.value.split(",").map((s) => s.trim()).filter(Boolean);
  if (subjects.length) body.subjects = subjects;
  const what = `${body.mode} replay of ${body.plugin} ${body.version || ""}`;
  if (body.mode === "apply" && !window.confirm(`Start an apply replay? It changes the shop (effects exactly once).`)) return;
  showError(null);
  try {
    const r = await api("POST", "/api/admin/replays", body);
    location.assign(`/console/replay/${r.replay_id}`);
  } catch (e) { showError(e); notice(what + " not started"); }
}

async function replay(id) {
  let outcome = new URLSearchParams(location.search).get("outcome") || "";
  page(h("h1", {}, `Replay ${id}`), h("p", { id: "notice", class: "muted" }), h("div", { id: "replay-head" }),
    h("div", { class: "progress" }, h("div", { id: "bar" })), h("p", { id: "progress-text" }),
    h("div", { id: "summary", class: "cards" }), h("h2", {}, "Diff: recorded vs candidate effects"),
    h("form", { class: "inline" }, h("label", {}, "Outcome", h("select", { id: "outcome", onchange: (ev) => { outcome = ev.target.value; diff(); } },
      ["", "changed", "regressed", "new", "failed", "same", "applied", "skipped"].map((o) => h("option", { value: o, selected: o === outcome }, o || "all"))))),
    h("div", { id: "diff" }));
  const diff = async () => {
    // "regressed": the failures of the version's own on events applied before.
    const filter = outcome === "regressed" ? "&outcome=failed&regressed=true" : outcome ? `&outcome=${seg(outcome)}` : "";
    const events = await api("GET", `/api/admin/replays/${seg(id)}/events?limit=500` + filter);
    set("diff", table(["Seq#", "Event", "Subject", "Outcome", "Recorded", "Candidate", "Reason"],
      events.map((e) => h("tr", { dataset: { outcome: e.outcome } },
        h("td", { class: "num" }, e.seq), h("td", {}, h("code", {}, e.event_id)), h("td", {}, e.subject),
        h("td", {}, badge(e.regressed ? "failed (regressed)" : e.outcome, e.outcome === "same" || e.outcome === "applied" ? "good" : e.outcome === "failed" ? "bad" : "warn")),
        h("td", {}, e.recorded ? (e.candidate ? effectsDiff(e.recorded, e.candidate) : effectsText(e.recorded)) : "—"),
        h("td", {}, e.candidate ? (e.recorded ? effectsDiff(e.candidate, e.recorded) : effectsText(e.candidate)) : "—"),
        h("td", {}, e.reason || ""))), { id: "diff-table" }));
  };
  let drawnDone = false;
  const draw = async () => {
    const r = await api("GET", `/api/admin/replays/${seg(id)}`);
    const pct = r.total ? Math.round(100 * r.processed / r.total) : (r.state === "running" ? 0 : 100);
    document.getElementById("bar").style.width = pct + "%";
    set("progress-text", h("span", { id: "replay-state", dataset: { state: r.state } }, r.state), ` · ${r.processed} of ${r.total} events (${pct}%)`,
      r.error ? h("span", { class: "error" }, ` · ${r.error}`) : "");
    set("replay-head", h("p", {}, `${r.mode} of `, h("a", { href: `/console/plugins/${r.plugin}` }, r.plugin), ` version ${r.version}, ` + (r.total ? `sequences ${r.from_seq}–${r.to_seq}` : "no events in that range"),
      r.subjects.length ? `, subjects ${r.subjects.join(", ")}` : "", r.max_rate ? `, at most ${r.max_rate} ev/s` : "", ` · by ${r.requested_by}`, " ",
      r.state === "running" ? h("button", { id: "cancel", class: "danger", onclick: () => act(`Cancel replay ${id}?`, async () => { await api("DELETE", `/api/admin/replays/${seg(id)}`); await draw(); }) }, "Cancel") : goOn(r)));
    set("summary", outcomes(r).map(([k, v]) => h("div", { class: "card", dataset: { outcome: k } }, h("div", { class: "muted" }, k), h("div", { class: "big" }, v))));
    if (r.state !== "running" && !drawnDone) { drawnDone = true; await diff(); }
    else if (r.state === "running") await diff();
  };
  await draw();
  every(700, async () => { if (!drawnDone) await draw(); });
}

// A replay that ended before its range did (cancelled, failed, interrupted) goes on as a new
// one over the rest: the same plugin, version, mode, subjects and rate.
function goOn(r) {
  const next = r.resume_from;
  if (next == null) return "";
  const body = { plugin: r.plugin, version: r.version, mode: r.mode, from_seq: next, to_seq: r.to_seq, subjects: r.subjects };
  if (r.max_rate) body.max_rate = r.max_rate;
  return h("button", { id: "go-on", onclick: () => act(`Replay the rest, sequences ${next}–${r.to_seq}?`, async () => {
    const started = await api("POST", "/api/admin/replays", body);
    location.assign(`/console/replay/${started.replay_id}`);
  }) }, `Go on from ${next}`);
}

// ---------- order timeline ----------

async function order(id) {
  const form = h("form", { id: "order-form", class: "inline", onsubmit: (ev) => {
    ev.preventDefault();
    const v = ev.target.order_id.value.trim();
    if (v) location.assign(`/console/orders/${encodeURIComponent(v)}`);
  } }, h("label", {}, "Order id", h("input", { name: "order_id", value: id || "", required: true, size: 22 })), h("button", { type: "submit", class: "primary" }, "Show timeline"));
  page(h("h1", {}, "Order timeline"), form, h("div", { id: "timeline" }));
  if (!id) return;
  const [t, plugins] = await Promise.all([api("GET", `/api/admin/orders/${encodeURIComponent(id)}/timeline`), api("GET", "/api/admin/plugins")]);
  const read = (subject) => plugins.some((p) => p.active_version && (p.subjects || []).some((f) => matches(f, subject)));
  const o = t.order;
  const STATUS = ["pre-order", "confirmed", "cancelled", "invalid", "refunded"], PAY = ["unpaid", "paying", "paid"];
  set("timeline",
    h("p", {}, `Order ${o.order_id} of user ${o.user_id}: `, badge(STATUS[o.order_status] || o.order_status), " ", badge(PAY[o.pay_status] || o.pay_status),
      ` · ${o.goods_number} × goods ${o.goods_id} at ${o.goods_price}, amount ${o.order_amount}, coupon ${o.coupon_id || "none"} (${o.coupon_paid}), balance used ${o.money_paid}, to pay ${o.pay_amount}`),
    h("h2", {}, "States"),
    h("ul", { class: "timeline", id: "states" }, t.states.map((s) => h("li", { dataset: { state: s.state } }, h("b", {}, s.state), ` ${fmtTime(s.at)}`, s.note ? ` — ${s.note}` : ""))),
    h("h2", {}, "Steps"),
    table(["Step", "Action", "Amount", "By", "At"], t.steps.map((s) => h("tr", { dataset: { step: s.step, action: s.action } },
      h("td", {}, s.step), h("td", {}, s.action === "given-back" ? badge("given back", "good") : badge("taken")), h("td", {}, s.amount),
      h("td", {}, s.by || (s.action === "taken" ? "order flow" : "—")), h("td", {}, fmtTime(s.at)))), { id: "steps" }),
    h("h2", {}, "Events and what the plugins did"),
    table(["Seq#", "Subject", "Event", "Written", "Published", "Plugin", "Result", "Version", "At", "Effects"],
      t.events.flatMap((e) => {
        const handled = e.handled.length ? e.handled : [null];
        return handled.map((x, i) => h("tr", { dataset: { subject: e.subject, plugin: x ? x.plugin : "" } },
          i === 0 ? [h("td", { class: "num", rowspan: handled.length }, e.stream_seq || "—"), h("td", { rowspan: handled.length }, e.subject),
            h("td", { rowspan: handled.length }, h("code", {}, e.event_id)), h("td", { rowspan: handled.length }, fmtTime(e.written_at)),
            h("td", { rowspan: handled.length }, e.published_at ? fmtTime(e.published_at) : badge("in outbox", "warn"))] : [],
          x ? [h("td", {}, x.plugin), h("td", {}, x.state === "applied" ? badge("applied", "good") : x.state === "dismissed" ? badge("dismissed", "warn") : badge(`${x.state} (${x.attempts})`, "bad")),
            h("td", {}, x.version ? h("code", {}, x.version) : "—"), h("td", {}, fmtTime(x.at)),
            h("td", {}, x.effects ? effectsText(x.effects) : (x.remark || "—"))]
            : [h("td", { colspan: 5, class: "muted" }, read(e.subject) ? "no plugin has handled it yet" : "no plugin here reads this subject")]));
      }), { id: "events" }),
    h("h2", {}, "Dead letters"),
    table(["Id", "Plugin", "Version", "Subject", "Reason", "Status"], t.dead_letters.map((d) => h("tr", {},
      h("td", {}, h("a", { href: `/console/dead-letters?plugin=${encodeURIComponent(d.plugin)}&id=${encodeURIComponent(d.id)}` }, d.id)), h("td", {}, d.plugin), h("td", {}, d.plugin_version),
      h("td", {}, d.subject), h("td", {}, d.reason), h("td", {}, letterStatus(d)))), { id: "order-dead-letters" }));
}

// A dead letter's state as the API says it: open (perhaps after a redrive that failed
// again), redriven (by a redrive or an --apply replay), or dismissed.
function letterStatus(d) {
  if (d.state === "dismissed") return badge(d.redrive_result, "warn");
  if (d.state === "redriven") return badge(`redriven: ${d.redrive_result}`, "good");
  return d.redrive_result ? badge(`open: redrive failed: ${d.redrive_result.replace(/^failed: /, "")}`, "bad") : badge("open", "warn");
}

// ---------- router ----------

const ROUTES = [
  [/^\/console\/?$/, "overview", () => overview()],
  [/^\/console\/plugins\/([^/]+)$/, "overview", (m) => plugin(decodeURIComponent(m[1]))],
  [/^\/console\/dead-letters$/, "dead-letters", () => deadLetters()],
  [/^\/console\/replay$/, "replay", () => replayForm()],
  [/^\/console\/replay\/(\d+)$/, "replay", (m) => replay(m[1])],
  [/^\/console\/orders(?:\/([^/]+))?$/, "orders", (m) => order(m[1] && decodeURIComponent(m[1]))],
];

async function route() {
  timers.forEach(clearInterval);
  timers = [];
  showError(null);
  const path = location.pathname;
  const found = ROUTES.find(([re]) => re.test(path));
  if (!found) { page(h("h1", {}, "Not found"), h("p", {}, "No console page at ", h("code", {}, path), ".")); return; }
  const [re, nav, draw] = found;
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("current", a.dataset.nav === nav));
  try { await draw(path.match(re)); } catch (e) { showError(e); }
  document.body.dataset.ready = "true";
}

document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/console/logout", { method: "POST", headers: { "X-CSRF-Token": CSRF }, credentials: "same-origin" });
  location.assign("/console/login");
});

route();
