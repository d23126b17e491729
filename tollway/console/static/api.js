// The one way the console calls the admin API: /admin/v1 on this origin, the credential (an admin
// key or a signed-in person's access token, kept in this tab's sessionStorage) as a bearer token.
export const STORE = "tollway.console";
export const session = () => JSON.parse(sessionStorage.getItem(STORE) || "null");
const hooks = { unauthorized: () => {} };
export function onUnauthorized(fn) { hooks.unauthorized = fn; }

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function api(method, path, body, quiet = false) {
  const s = session();
  const headers = { authorization: `Bearer ${s ? s.token : ""}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(`/admin/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const msg = data && data.error ? data.error.message : `${resp.status} ${resp.statusText}`;
    if (resp.status === 401 && !quiet) hooks.unauthorized(`Signed out: ${msg}`);
    throw new ApiError(resp.status, msg);
  }
  return data;
}
