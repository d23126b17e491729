// Who may do what: users and groups (with where they came from), keys, models and grants.
import { api } from "./api.js";
import { confirmButton, el, fields, fmt, input, reportError, table } from "./dom.js";

const list = (v) => (v ? v.split(",").map((s) => s.trim()).filter(Boolean) : []);

export async function people(root) {
  const users = el("div", { id: "users-out" });
  const groups = el("div", { id: "groups-out" });
  const userForm = el("form", { class: "row", id: "user-form" }, input("name", "Name", { id: "new-user-name", required: true }),
    input("email", "Email", { id: "new-user-email", type: "email" }), input("groups", "Groups (comma-separated)", { id: "new-user-groups" }),
    el("button", { type: "submit", id: "create-user", text: "Create user" }));
  const groupForm = el("form", { class: "row", id: "group-form" }, input("name", "Name", { id: "new-group-name", required: true }),
    input("grants", "Model grants (globs, comma-separated)", { id: "new-group-grants" }),
    el("button", { type: "submit", id: "create-group", text: "Create group" }));
  const draw = async () => {
    const [u, g] = await Promise.all([api("GET", "/users?limit=50"), api("GET", "/groups?limit=100")]);
    const ids = u.data.map((x) => `user_id=${encodeURIComponent(x.id)}`).join("&");
    const src = await api("GET", `/insights/identities${ids ? `?${ids}` : ""}`);
    const gname = Object.fromEntries(g.data.map((x) => [x.id, x.name]));
    users.replaceChildren(table("users-table", [
      { label: "Name", get: (r) => r.name }, { label: "Email", get: (r) => r.email }, { label: "Id", get: (r) => r.id },
      { label: "Groups", get: (r) => r.groups.map((id) => el("span", { class: "pill", text: gname[id] || id })) },
      { label: "Source", get: (r) => (src.users[r.id] ? `IdP (${src.users[r.id].join(", ")})` : "local") },
      { label: "Status", get: (r) => (r.disabled ? el("span", { class: "bad", text: "disabled" }) : "active") },
      { label: "", get: (r) => el("button", { type: "button", class: "secondary", id: `user-toggle-${r.id}`, text: r.disabled ? "Enable" : "Disable",
        onclick: async () => { try { await api("POST", `/users/${r.id}/${r.disabled ? "enable" : "disable"}`); await draw(); } catch (e) { reportError(e); } } }) },
    ], u.data), u.has_more ? el("p", { class: "muted", text: "Showing the first 50 users." }) : "");
    const rules = src.group_rules || [];
    groups.replaceChildren(table("groups-table", [
      { label: "Name", get: (r) => r.name }, { label: "Id", get: (r) => r.id },
      { label: "Grants", get: (r) => r.grants.map((p) => el("span", { class: "pill", text: p })) },
      { label: "Members", get: (r) => r.members.length, num: true },
      { label: "Source", get: (r) => {
        const m = rules.filter((x) => x.group === r.name || x.group.includes("{idp}"));
        if (m.length) return `IdP groups ${m.map((x) => x.match).join(", ")}`;
        return (src.default_groups || []).includes(r.name) ? "every signed-in person" : "local";
      } },
    ], g.data));
  };
  userForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = fields(userForm);
    try {
      await api("POST", "/users", { name: f.name, email: f.email || null, groups: list(f.groups) });
      userForm.reset();
      await draw();
    } catch (e) { reportError(e); }
  });
  groupForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = fields(groupForm);
    try {
      await api("POST", "/groups", { name: f.name, grants: list(f.grants) });
      groupForm.reset();
      await draw();
    } catch (e) { reportError(e); }
  });
  root.append(el("h2", { text: "Users" }), userForm, users, el("h2", { text: "Groups" }), groupForm, groups);
  await draw();
}

function secretBox(id, title, created) {
  return el("div", { class: "panel", id }, el("strong", { text: title }),
    el("p", { text: "Copy it now: it is shown once and stored only as a hash." }),
    el("div", { class: "secret", id: `${id}-value`, text: created.key }), el("p", { class: "muted", text: `Key id ${created.id}` }));
}

export async function keys(root, ctx) {
  // A developer manages only their own personal keys, through the self-service routes.
  const mine = ctx.me.role === "developer" && ctx.me.user ? ctx.me.user.id : null;
  const base = mine ? "/me/keys" : "/keys";
  const out = el("div", { id: "keys-out" });
  const shown = el("div", { id: "key-created" });
  const form = el("form", { class: "row", id: "key-form-new" }, input("name", "Name", { id: "key-name", required: true }),
    mine ? null : input("user_id", "User (id or name)", { id: "key-user" }),
    mine ? null : input("group_id", "Group (service key)", { id: "key-group" }),
    input("models", "Models (globs; empty: all granted)", { id: "key-models" }),
    input("expires", "Expires", { id: "key-expires", type: "date" }),
    el("button", { type: "submit", id: "create-key", text: "Create key" }));
  const draw = async () => {
    const d = await api("GET", `${base}?limit=100`);
    const cls = { active: "ok", revoked: "bad", expired: "warn" };
    out.replaceChildren(table("keys-table", [
      { label: "Name", get: (r) => r.name }, { label: "Id", get: (r) => r.id }, { label: "Prefix", get: (r) => r.prefix },
      { label: "Kind", get: (r) => r.kind }, { label: "Owner", get: (r) => r.user_id || r.group_id },
      { label: "Models", get: (r) => (r.models ? r.models.join(", ") : "all granted") },
      { label: "Created", get: (r) => fmt.ts(r.created_at) }, { label: "Expires", get: (r) => (r.expires_at ? fmt.ts(r.expires_at) : "never") },
      { label: "Status", get: (r) => el("span", { class: cls[r.status] || "", id: `key-status-${r.id}`, text: r.status }) },
      { label: "", get: (r) => (r.status === "revoked" ? null : el("span", {},
        el("button", { type: "button", class: "secondary", id: `key-rotate-${r.id}`, text: "Rotate", onclick: async () => {
          try { const x = await api("POST", `${base}/${r.id}/rotate`, {}); shown.replaceChildren(secretBox("key-secret", `Rotated: new key for ${r.name}`, x.key)); await draw(); } catch (e) { reportError(e); }
        } }), " ",
        confirmButton(`key-revoke-${r.id}`, "Revoke", async () => {
          try { await api("POST", `${base}/${r.id}/revoke`); await draw(); } catch (e) { reportError(e); }
        }))) },
    ], d.data));
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = fields(form);
    const body = mine ? { name: f.name } : { name: f.name, user_id: f.user_id || null, group_id: f.group_id || null };
    if (f.models) body.models = list(f.models);
    if (f.expires) body.expires_at = new Date(`${f.expires}T23:59:59Z`).toISOString();
    try {
      const created = await api("POST", base, body);
      shown.replaceChildren(secretBox("key-secret", `New key ${created.name}`, created));
      form.reset();
      await draw();
    } catch (e) { reportError(e); }
  });
  root.append(form, shown, out);
  await draw();
}

export async function models(root) {
  const d = await api("GET", "/insights/models");
  const price = (p) => `in $${p.input} · out $${p.output} per Mtok`;
  root.append(table("models-table", [
    { label: "Model", get: (r) => r.id }, { label: "Name", get: (r) => r.display_name },
    { label: "Provider", get: (r) => r.providers.join(", ") }, { label: "Pricing", get: (r) => price(r.pricing) },
    { label: "Aliases", get: (r) => r.aliases.join(", ") }, { label: "Fallbacks", get: (r) => r.fallbacks.join(", ") },
    { label: "Granted to", get: (r) => (r.groups.length ? r.groups.map((g) => el("span", { class: "pill", text: g.name })) : el("span", { class: "muted", text: "nobody" })) },
  ], d.data), el("h2", { text: "Grants" }), table("grants-table", [
    { label: "Group", get: (r) => r.group }, { label: "Pattern", get: (r) => r.pattern }], d.grants));
}
