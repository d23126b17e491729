// What happened and who did it: the audit log with its chain verification, and alert deliveries.
import { api } from "./api.js";
import { el, fields, fmt, input, query, reportError, select, table } from "./dom.js";

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

function generic(id, rows) {
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))].slice(0, 10);
  const cell = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : v);
  return table(id, cols.map((c) => ({ label: c, get: (r) => cell(r[c]) })), rows);
}

export async function alerts(root) {
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
  const deliveries = await api("GET", "/alerts/deliveries").catch((e) => { if (e.status === 404) return []; throw e; });
  root.append(el("h2", { text: "Rules" }), generic("alert-rules", asList(rules)),
    el("h2", { text: "Delivery log" }), generic("alert-deliveries", asList(deliveries)));
}
