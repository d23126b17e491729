// What happened and who did it: the audit log with its chain verification, and alert deliveries.
import { api } from "./api.js";
import { confirmButton, el, fields, fmt, input, query, reportError, select, table } from "./dom.js";

function verificationText(v) {
  if (v.state === "never") return ["muted", "Not verified yet in this gateway process."];
  if (v.state === "running") return ["warn", `Verifying… (started ${fmt.ts(v.started_at)})`];
  if (v.state === "failed") return ["bad", v.error || "The verification could not run."];
  if (v.ok) return ["ok", `Chain intact: ${fmt.int(v.records)} records in ${v.chains.length} chain(s), verified ${fmt.ts(v.finished_at)}.`];
  const broken = v.chains.filter((c) => !c.ok);
  return ["bad", `Chain broken: ${broken.map((c) => `${c.writer}: ${c.problem}`).join("; ")}`];
}

async function verifyPanel() {
  const status = el("p", { id: "verify-status" });
  const button = el("button", { type: "button", id: "verify", text: "Verify now" });
  const paint = (v) => {
    const [cls, text] = verificationText(v);
    status.className = cls; status.textContent = text; status.dataset.state = v.state;
    button.disabled = v.state === "running";
  };
  const poll = async () => {
    const v = await api("GET", "/insights/audit/verification");
    paint(v);
    if (v.state === "running" && status.isConnected) setTimeout(() => poll().catch(reportError), 500);
  };
  button.addEventListener("click", async () => {
    try { paint(await api("POST", "/insights/audit/verification")); await poll(); } catch (e) { reportError(e); }
  });
  await poll();
  return el("div", { class: "panel", id: "verify-panel" }, el("h2", { text: "Chain verification" }), status, button);
}

export async function audit(root) {
  const form = el("form", { class: "row", id: "audit-form" },
    select("kind", "Kind", [["", "any"], ["change", "changes"], ["request", "requests"]], { id: "audit-kind" }),
    input("actor", "Actor (key, user or group id)", { id: "audit-actor" }), input("request_id", "Request id", { id: "audit-request" }),
    input("model", "Model", { id: "audit-model" }), input("status", "Status", { id: "audit-status", type: "number", min: 100, max: 599 }),
    select("dlp", "DLP", [["", "any"], ["true", "findings only"]], { id: "audit-dlp" }),
    el("button", { type: "submit", id: "audit-search", text: "Search" }));
  const out = el("div", { id: "audit-out" });
  root.append(await verifyPanel(), form, out);
  let rows = [], last = null, filters = {};
  const render = (hasMore) => out.replaceChildren(table("audit-table", [
    { label: "#", get: (r) => r.id, num: true }, { label: "Time", get: (r) => fmt.ts(new Date(r.ts * 1000).toISOString()) },
    { label: "Kind", get: (r) => r.kind }, { label: "What", get: (r) => r.action || r.route },
    { label: "Actor", get: (r) => (r.actor ? r.actor.user_id || r.actor.key_id || r.actor.group_id : null) },
    { label: "Target / model", get: (r) => r.target || r.requested_model }, { label: "Status", get: (r) => r.status, num: true },
    { label: "DLP", get: (r) => (r.dlp ? r.dlp.map((f) => f.kind).join(", ") : null) },
    { label: "Hash", get: (r) => el("code", { text: r.hash.slice(0, 12) }) },
  ], rows), hasMore ? el("button", { type: "button", id: "audit-more", class: "secondary", text: "More", onclick: () => load(true).catch(reportError) }) : "");
  const load = async (more) => {
    const d = await api("GET", `/audit${query({ ...filters, limit: 50, after: more ? last : undefined })}`);
    rows = more ? rows.concat(d.data) : d.data;
    last = d.last_id;
    render(d.has_more);
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); filters = fields(form); load(false).catch(reportError); });
  await load(false);
}

const asList = (d) => (Array.isArray(d) ? d : (d && Array.isArray(d.data) ? d.data : []));

export async function alerts(root, ctx) {
  let rules;
  try {
    rules = await api("GET", "/alerts");
  } catch (e) {
    if (e.status === 404) {
      root.append(el("p", { id: "alerts-unavailable", class: "muted", text: "Alerts are not available on this gateway." }));
      return;
    }
    throw e;
  }
  const canWrite = !ctx || !ctx.me || !ctx.me.permissions || ctx.me.permissions.includes("alerts.write");
  const rulesOut = el("div", { id: "alert-rules-out" });
  const deliveriesOut = el("div", { id: "alert-deliveries-out" });
  const draw = async () => {
    rules = await api("GET", "/alerts");
    const byId = Object.fromEntries(rules.map((r) => [r.id, r.name]));
    rulesOut.replaceChildren(table("alert-rules", [
      { label: "Name", get: (r) => r.name }, { label: "Kind", get: (r) => r.kind },
      { label: "Applies to", get: (r) => (r.scope ? `${r.scope} ${r.scope_id || "(every one)"}` : "every budget") },
      { label: "Fires at", get: (r) => (r.kind === "budget" ? r.thresholds.map((t) => `${t} %`).join(", ")
        : `${Math.round(r.error_rate * 100)} % errors over ${r.window_seconds} s (≥ ${r.min_requests} requests)`) },
      { label: "Webhook", get: (r) => `${r.webhook} (${r.format})` }, { label: "Enabled", get: (r) => (r.enabled ? "yes" : "no") },
      { label: "", get: (r) => (canWrite ? confirmButton(`alert-delete-${r.id}`, "Delete", async () => {
        try { await api("DELETE", `/alerts/${encodeURIComponent(r.id)}`); await draw(); } catch (e) { reportError(e); }
      }) : null) },
    ], rules));
    const deliveries = await api("GET", "/alerts/deliveries");
    deliveriesOut.replaceChildren(table("alert-deliveries", [
      { label: "Created", get: (d) => fmt.ts(d.created_at) }, { label: "Rule", get: (d) => byId[d.rule_id] || d.rule_id },
      { label: "Event", get: (d) => (d.event.type === "budget_threshold"
        ? `${d.event.scope || ""} ${d.event.name || d.event.scope_id || ""}: ${Math.round(d.event.percent_used)} % of its budget (threshold ${d.event.threshold} %)`
        : `${d.event.errors} of ${d.event.requests} requests failed (threshold ${Math.round(d.event.threshold * 100)} %)`) },
      { label: "Status", get: (d) => d.status }, { label: "Attempts", get: (d) => d.attempts, num: true },
      { label: "Last answer", get: (d) => (d.last_status ? String(d.last_status) : d.last_error) },
      { label: "Delivered", get: (d) => (d.delivered_at ? fmt.ts(d.delivered_at) : null) },
    ], asList(deliveries)));
  };
  if (canWrite) {
    const form = el("form", { class: "row", id: "alert-form" },
      input("name", "Name", { id: "alert-name", required: true }),
      select("kind", "Kind", [["budget", "budget thresholds"], ["error_rate", "error-rate spike"]], { id: "alert-kind" }),
      input("thresholds", "Thresholds (%)", { id: "alert-thresholds", value: "50, 80, 100" }),
      input("webhook_url", "Webhook URL", { id: "alert-webhook", type: "url", required: true }),
      select("format", "Payload", [["json", "JSON"], ["slack", "Slack"]], { id: "alert-format" }),
      el("button", { type: "submit", id: "alert-save", text: "Add rule" }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = fields(form);
      const body = { name: f.name, kind: f.kind, webhook_url: f.webhook_url, format: f.format };
      if (f.kind === "budget" && f.thresholds) body.thresholds = f.thresholds.split(",").map((t) => Number(t.trim()));
      try { await api("POST", "/alerts", body); form.reset(); await draw(); } catch (e) { reportError(e); }
    });
    root.append(form);
  }
  root.append(el("h2", { text: "Rules" }), rulesOut, el("h2", { text: "Delivery log" }), deliveriesOut);
  await draw();
}
