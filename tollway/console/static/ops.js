// What the gateway did: overview charts, usage explorer, request log, DLP findings, limits.
import { api } from "./api.js";
import { chart } from "./chart.js";
import { confirmButton, el, fields, fmt, input, query, reportError, select, table } from "./dom.js";

export async function overview(root) {
  const days = el("select", { id: "ov-days" }, [[1, "Last 24 hours"], [7, "Last 7 days"], [30, "Last 30 days"],
    [90, "Last 90 days"]].map(([v, t]) => el("option", { value: v, text: t, selected: v === 30 })));
  const out = el("div");
  root.append(el("div", { class: "row" }, el("label", {}, "Period", days)), out);
  const draw = async () => {
    const d = await api("GET", `/insights/overview?days=${days.value}`);
    const t = d.totals;
    const tile = (id, label, v) => el("div", { class: "tile", id }, el("div", { class: "muted", text: label }), el("div", { class: "v", text: v }));
    out.replaceChildren(
      el("div", { class: "tiles" }, tile("tile-requests", "Requests", fmt.int(t.requests)),
        tile("tile-errors", "Errors", fmt.int(t.errors)), tile("tile-spend", "Spend", fmt.usd(t.cost_usd)),
        tile("tile-tokens", "Tokens in / out", `${fmt.int(t.input_tokens)} / ${fmt.int(t.output_tokens)}`)),
      el("div", { class: "charts" },
        chart("chart-requests", "Requests and errors", d.data, [{ key: "requests", label: "requests" },
          { key: "errors", label: "errors", cls: "err" }], "bar", (v) => fmt.int(Math.round(v))),
        chart("chart-spend", "Spend (USD)", d.data, [{ key: "cost_usd", label: "spend" }], "bar", (v) => fmt.usd(v)),
        chart("chart-latency", "Latency (ms, histogram bounds)", d.data, [{ key: "latency_p50_ms", label: "p50" },
          { key: "latency_p95_ms", label: "p95", cls: "p95" }], "line", (v) => fmt.int(Math.round(v))),
        chart("chart-tokens", "Tokens", d.data, [{ key: "input_tokens", label: "input" },
          { key: "output_tokens", label: "output", cls: "err" }], "bar", (v) => fmt.int(Math.round(v)))));
  };
  days.addEventListener("change", () => draw().catch(reportError));
  await draw();
}

const USAGE_COLUMNS = ["key", "name", "requests", "errors", "input_tokens", "output_tokens", "cache_write_tokens",
  "cache_read_tokens", "cost_usd", "budget_usd", "budget_period", "budget_spent_usd", "budget_remaining_usd"];

function csv(rows) {
  const cell = (v) => { const s = v === null || v === undefined ? "" : String(v); return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s; };
  return [USAGE_COLUMNS.join(","), ...rows.map((r) => USAGE_COLUMNS.map((c) => cell(r[c])).join(","))].join("\n") + "\n";
}

export async function usage(root, ctx) {
  // A developer reads their own usage (/me/usage: by day, model or key); other roles the report
  // their role reaches (a group admin's is filtered to its groups by the API).
  const own = ctx.me.role === "developer";
  const by = own ? [["day", "day"], ["model", "model"], ["key", "key"]]
    : [["user", "user"], ["group", "group"], ["key", "key"], ["model", "model"], ["day", "day"]];
  const form = el("form", { class: "row", id: "usage-form" },
    select("by", "Group by", by, { id: "usage-by" }),
    // This month by default: the period budgets count in.
    input("since", "Since", { type: "date", id: "usage-since", value: new Date().toISOString().slice(0, 8) + "01" }),
    input("until", "Until", { type: "date", id: "usage-until" }),
    own ? null : input("user", "User", { id: "usage-user", placeholder: "id or name" }),
    own ? null : input("group", "Group", { id: "usage-group" }),
    own ? null : input("key_id", "Key id", { id: "usage-key" }), input("model", "Model", { id: "usage-model" }),
    el("button", { type: "submit", id: "usage-run", text: "Show" }),
    el("button", { type: "button", id: "usage-csv", class: "secondary", text: "Export CSV" }));
  const out = el("div", { id: "usage-out" });
  root.append(form, out);
  let last = [];
  const run = async () => {
    const f = fields(form);
    const d = await api("GET", `${own ? "/me/usage" : "/usage"}${query(f)}`);
    last = d.data;
    out.replaceChildren(table("usage-table", [
      { label: d.by, get: (r) => r.key }, { label: "Name", get: (r) => r.name },
      { label: "Requests", get: (r) => fmt.int(r.requests), num: true }, { label: "Errors", get: (r) => fmt.int(r.errors), num: true },
      { label: "Input", get: (r) => fmt.int(r.input_tokens), num: true }, { label: "Output", get: (r) => fmt.int(r.output_tokens), num: true },
      { label: "Cost", get: (r) => fmt.usd(r.cost_usd), num: true },
      { label: "Budget", get: (r) => (r.budget_usd === null ? null : `${fmt.usd(r.budget_usd)} / ${r.budget_period}`), num: true },
      { label: "Used", get: (r) => fmt.usd(r.budget_spent_usd), num: true },
      { label: "Remaining", get: (r) => fmt.usd(r.budget_remaining_usd), num: true },
    ], d.data));
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); run().catch(reportError); });
  form.querySelector("#usage-csv").addEventListener("click", () => {
    const a = el("a", { href: URL.createObjectURL(new Blob([csv(last)], { type: "text/csv" })), download: "tollway-usage.csv" });
    document.body.append(a); a.click(); a.remove();
  });
  await run();
}

function dlpList(findings) {
  if (!findings || !findings.length) return null;
  return el("span", {}, findings.map((f) => el("span", { class: "pill", text: `${f.kind} ×${f.count} (${f.action})` })));
}

async function requestDetail(box, id) {
  const r = await api("GET", `/insights/requests/${encodeURIComponent(id)}`);
  const a = r.audit || {};
  const kv = [["Request id", r.request_id], ["Time", fmt.ts(r.ts || (a.ts && new Date(a.ts * 1000).toISOString()))],
    ["Route", r.route || a.route], ["Who", [r.user_name || r.user_id, r.group_name || r.group_id, r.key_name || r.key_id].filter(Boolean).join(" · ")],
    ["Model", `${r.model || a.requested_model || "–"} → ${r.upstream_model || a.upstream_model || "–"}`],
    ["Status", `${r.status ?? a.status}${r.error_type ? ` (${r.error_type})` : ""}`],
    ["Latency", fmt.ms(r.latency_ms ?? a.latency_ms)], ["Deployment", r.deployment || a.deployment],
    ["Attempts", r.attempt_log ? JSON.stringify(r.attempt_log) : r.attempts],
    ["Upstream request id", r.upstream_request_id || a.upstream_request_id], ["Client", r.client || a.client],
    ["Tokens in / out", `${fmt.int(r.input_tokens)} / ${fmt.int(r.output_tokens)}`], ["Cost", fmt.usd(r.cost_usd)]];
  const dl = el("dl", { class: "kv" }, kv.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v ?? "–" })]));
  const findings = r.dlp || a.dlp;
  const dlpBox = el("div", { id: "req-dlp" }, el("h2", { text: "DLP findings" }), findings && findings.length
    ? table("req-dlp-table", [{ label: "Kind", get: (f) => f.kind }, { label: "Category", get: (f) => f.category },
      { label: "Action", get: (f) => f.action }, { label: "Where", get: (f) => (Array.isArray(f.where) ? f.where.join(", ") : f.where) },
      { label: "Count", get: (f) => f.count, num: true }], findings)
    : el("p", { class: "muted", text: "None." }));
  const payload = el("div", { id: "req-payload" });
  if (r.captured) {
    payload.append(el("button", { type: "button", id: "req-payload-show", class: "secondary", text: "Show captured payload", onclick: async () => {
      try {
        const p = await api("GET", `/audit/payloads/${encodeURIComponent(id)}`);
        payload.replaceChildren(el("h2", { text: "Request (after DLP)" }), el("pre", { text: p.request_body }),
          el("h2", { text: "Response" }), el("pre", { text: p.response_body || "–" }));
      } catch (e) { reportError(e); }
    } }));
  } else {
    payload.append(el("p", { class: "muted", text: "No payload captured (capture is off for this request's group)." }));
  }
  box.replaceChildren(el("h2", { text: `Request ${id}` }), dl, dlpBox, payload);
  box.hidden = false;
}

export async function requests(root, ctx) {
  const form = el("form", { class: "row", id: "req-form" },
    input("request_id", "Request id", { id: "req-id" }), input("user", "User", { id: "req-user" }),
    input("model", "Model", { id: "req-model" }), input("status", "Status", { id: "req-status", type: "number", min: 100, max: 599 }),
    el("label", {}, "Errors only", el("input", { type: "checkbox", name: "errors", id: "req-errors", value: "true" })),
    input("since", "Since", { type: "datetime-local", id: "req-since" }), input("until", "Until", { type: "datetime-local", id: "req-until" }),
    el("button", { type: "submit", id: "req-search", text: "Search" }));
  const out = el("div", { id: "req-out" });
  const detail = el("div", { id: "req-detail", class: "panel", hidden: true });
  root.append(form, out, detail);
  let rows = [], next = null, filters = {};
  const iso = (v) => (v ? new Date(v).toISOString() : undefined);
  const render = () => {
    out.replaceChildren(table("req-table", [
      { label: "Time", get: (r) => fmt.ts(r.ts) }, { label: "Request id", get: (r) => el("a", { href: "#/requests", text: r.request_id }) },
      { label: "User", get: (r) => r.user_name || r.user_id }, { label: "Key", get: (r) => r.key_name || r.key_id },
      { label: "Model", get: (r) => r.model }, { label: "Status", get: (r) => r.status, num: true },
      { label: "Latency", get: (r) => fmt.ms(r.latency_ms), num: true }, { label: "Cost", get: (r) => fmt.usd(r.cost_usd), num: true },
      { label: "DLP", get: (r) => dlpList(r.dlp) },
    ], rows, (r) => requestDetail(detail, r.request_id).catch(reportError)),
    next ? el("button", { type: "button", id: "req-more", class: "secondary", text: "More", onclick: () => load(true).catch(reportError) }) : "");
  };
  const load = async (more) => {
    const q = { ...filters, limit: 50, before: more ? next : undefined };
    const d = await api("GET", `/insights/requests${query(q)}`);
    rows = more ? rows.concat(d.data) : d.data;
    next = d.next_before;
    render();
    if (!more && filters.request_id && rows.length === 1) await requestDetail(detail, rows[0].request_id);
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = fields(form);
    filters = { ...f, since: iso(f.since), until: iso(f.until) };
    if (ctx.me.role === "developer" && ctx.me.user) filters.user = ctx.me.user.id;
    detail.hidden = true;
    load(false).catch(reportError);
  });
  if (ctx.me.role === "developer" && ctx.me.user) filters.user = ctx.me.user.id;
  await load(false);
}

export async function dlp(root) {
  const d = await api("GET", "/insights/dlp?days=30");
  const pol = d.policies || {};
  const policyRows = [["default", pol.default || {}], ...Object.entries(pol.groups || {})];
  root.append(
    el("div", { class: "panel", id: "dlp-policy" }, el("h2", { text: `Policy in force (DLP ${d.enabled ? "on" : "off"})` }),
      table("dlp-policy-table", [{ label: "Applies to", get: (r) => r[0] },
        { label: "Actions by category", get: (r) => Object.entries(r[1].actions || {}).map(([k, v]) => `${k}: ${v}`).join(", ") },
        { label: "Actions by kind", get: (r) => Object.entries(r[1].kinds || {}).map(([k, v]) => `${k}: ${v}`).join(", ") }], policyRows),
      d.custom.length ? el("p", { text: `Custom patterns: ${d.custom.map((c) => `${c.name} (${c.action || "default"})`).join(", ")}` }) : null),
  );
  const days = {};
  const kinds = {};
  for (const r of d.data) {
    days[r.day] = (days[r.day] || 0) + r.requests;
    const k = (kinds[`${r.kind}|${r.action}`] ||= { kind: r.kind, action: r.action, requests: 0, matches: 0 });
    k.requests += r.requests; k.matches += r.matches;
  }
  const series = Object.keys(days).sort().map((t) => ({ t, requests: days[t] }));
  root.append(el("div", { id: "dlp-findings" }, el("h2", { text: "Findings, last 30 days" }),
    d.truncated ? el("p", { class: "warn", text: "More findings than one view reads: the newest are counted." }) : null,
    el("div", { class: "charts" }, chart("chart-dlp", "Requests with findings per day", series, [{ key: "requests", label: "requests" }], "bar", (v) => fmt.int(Math.round(v)))),
    table("dlp-kinds", [{ label: "Kind", get: (r) => r.kind }, { label: "Action", get: (r) => r.action },
      { label: "Requests", get: (r) => fmt.int(r.requests), num: true }, { label: "Matches", get: (r) => fmt.int(r.matches), num: true }],
    Object.values(kinds).sort((a, b) => b.requests - a.requests))));
}

export async function limits(root) {
  const out = el("div", { id: "limits-out" });
  const form = el("form", { class: "row", id: "lim-form" },
    select("scope", "Scope", [["user", "user"], ["group", "group"], ["key", "key"]], { id: "lim-scope" }),
    input("ref", "User, group or key", { id: "lim-ref", required: true }), input("rpm", "Requests/min", { id: "lim-rpm", type: "number", min: 1 }),
    input("tpm", "Tokens/min", { id: "lim-tpm", type: "number", min: 1 }), input("concurrent", "Concurrent", { id: "lim-concurrent", type: "number", min: 1 }),
    input("budget_usd", "Budget (USD)", { id: "lim-budget", type: "number", min: 0, step: "0.01" }),
    select("budget_period", "Period", [["month", "month"], ["day", "day"]], { id: "lim-period" }),
    el("button", { type: "submit", id: "lim-save", text: "Set limits" }));
  const draw = async () => {
    const d = await api("GET", "/insights/limits");
    const of = (n, lim) => (lim ? `${fmt.int(n)} / ${fmt.int(lim)}` : fmt.int(n));
    out.replaceChildren(table("limits-table", [
      { label: "Scope", get: (r) => r.scope }, { label: "Name", get: (r) => r.name || r.scope_id },
      { label: "Requests (last min)", get: (r) => of(r.requests_last_minute, r.rpm), num: true },
      { label: "Tokens (last min)", get: (r) => of(r.tokens_last_minute, r.tpm), num: true },
      { label: "Concurrent", get: (r) => r.concurrent, num: true },
      { label: "Budget", get: (r) => (r.budget_usd === null ? null : `${fmt.usd(r.budget_usd)} / ${r.budget_period}`), num: true },
      { label: "Spent", get: (r) => fmt.usd(r.spent_usd), num: true }, { label: "Remaining", get: (r) => fmt.usd(r.remaining_usd), num: true },
      { label: "Resets", get: (r) => (r.resets_at ? fmt.ts(r.resets_at) : null) },
      { label: "", get: (r) => confirmButton(`lim-clear-${r.scope}-${r.scope_id}`, "Clear", async () => {
        try { await api("DELETE", `/limits/${r.scope}/${encodeURIComponent(r.scope_id)}`); await draw(); } catch (e) { reportError(e); }
      }) },
    ], d.data), el("p", { class: "muted", text: `Defaults from the config apply to everything else (limits backend: ${d.backend}). `
      + "Windows are read from the usage ledger, which trails the gateway by up to one flush interval." }));
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = fields(form);
    const body = { budget_period: f.budget_period };
    for (const k of ["rpm", "tpm", "concurrent"]) if (f[k]) body[k] = Number(f[k]);
    if (f.budget_usd) body.budget_usd = Number(f.budget_usd);
    try {
      await api("PUT", `/limits/${f.scope}/${encodeURIComponent(f.ref)}`, body);
      await draw();
    } catch (e) { reportError(e); }
  });
  root.append(form, out);
  await draw();
}
