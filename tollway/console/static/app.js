// The console's core: who is signed in, the one way to call the admin API, the page router.
// Plain ES modules, no framework, no request to any host but this gateway's /admin/v1.
import { PAGES } from "./pages.js";
import { el, reportError, show } from "./dom.js";
import { STORE, api, onUnauthorized, session } from "./api.js";

// The roles helper's GET /me; a gateway without it (404) is one where only admin keys open the
// admin API, so the caller is an organisation admin.
async function whoAmI() {
  try {
    return await api("GET", "/me", undefined, true);
  } catch (e) {
    if (e.status === 404) {
      await api("GET", "/users?limit=1", undefined, true); // the credential must still open the admin API
      return { role: "org_admin", user: null, key_id: null, groups: [], permissions: null, fallback: true };
    }
    throw e;
  }
}

export const ctx = { me: null, session: null };

function clearError() { document.getElementById("error").hidden = true; }

function signOut(reason) {
  const s = session();
  sessionStorage.removeItem(STORE);
  if (s && s.kind === "sso") { // end the sign-in session too (RFC 7009; best effort)
    fetch("/oauth/revoke", { method: "POST", body: new URLSearchParams({ token: s.token }) }).catch(() => {});
  }
  ctx.me = null;
  start().then(() => { if (reason) reportError(reason); });
}

function visible(page) {
  return !page.roles || page.roles.includes(ctx.me.role);
}

function renderNav() {
  const nav = document.getElementById("nav");
  nav.replaceChildren(...PAGES.filter(visible).map((p) => el("a", { href: `#/${p.id}`, id: `nav-${p.id}`, text: p.title })));
  nav.hidden = false;
}

async function route() {
  if (!ctx.me) return;
  clearError();
  const id = (location.hash.replace(/^#\/?/, "").split("?")[0]) || "overview";
  const page = PAGES.find((p) => p.id === id && visible(p)) || PAGES.find(visible);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === `nav-${page.id}`);
  const main = document.getElementById("main");
  const body = el("div", { id: `page-${page.id}`, class: "page" });
  main.replaceChildren(el("h1", { text: page.title }), body);
  document.title = `${page.title} · Tollway console`;
  try {
    await page.render(body, ctx);
    body.dataset.loaded = "1";
  } catch (e) {
    reportError(e);
    body.dataset.loaded = "error";
  }
}

async function start() {
  const s = session();
  ctx.session = s;
  const login = document.getElementById("login");
  if (!s || (s.expires && s.expires < Date.now())) {
    if (s) sessionStorage.removeItem(STORE);
    show(login, true); show(document.getElementById("main"), false);
    show(document.getElementById("nav"), false); show(document.getElementById("signout"), false);
    document.getElementById("whoami").textContent = "";
    return;
  }
  try {
    ctx.me = await whoAmI();
  } catch (e) {
    sessionStorage.removeItem(STORE);
    ctx.me = null;
    await start();
    reportError(e.status === 401 || e.status === 403
      ? `The admin API did not accept this sign-in: ${e.message}` : e);
    return;
  }
  const who = ctx.me.user ? (ctx.me.user.email || ctx.me.user.name) : (s.name || s.email || "admin key");
  document.getElementById("whoami").textContent = `${who} · ${ctx.me.role.replace("_", " ")}`;
  show(login, false); show(document.getElementById("main"), true); show(document.getElementById("signout"), true);
  renderNav();
  await route();
}

document.getElementById("key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = document.getElementById("admin-key");
  sessionStorage.setItem(STORE, JSON.stringify({ token: input.value.trim(), kind: "key" }));
  input.value = "";
  clearError();
  if (!location.hash) location.hash = "#/overview";
  await start();
});
document.getElementById("signout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
onUnauthorized(signOut);
start();
