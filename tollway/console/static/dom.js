// Small DOM helpers: elements are built with createElement and textContent only (never
// innerHTML), so nothing the API returns can become markup.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function show(node, on) { node.hidden = !on; }

export const fmt = {
  int: (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US")),
  usd: (n) => (n === null || n === undefined ? "–" : `$${Number(n).toFixed(Number(n) < 1 ? 4 : 2)}`),
  ms: (n) => (n === null || n === undefined ? "–" : `${Number(n).toLocaleString("en-US")} ms`),
  ts: (s) => (s ? new Date(s).toISOString().replace("T", " ").slice(0, 19) : "–"),
};

// A table from rows and columns [{label, get(row) -> value or Node, num?}], with an id.
export function table(id, columns, rows, onRow) {
  const head = el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null, text: c.label })));
  const body = rows.map((r) => {
    const tr = el("tr", { class: onRow ? "clickable" : null, onclick: onRow ? () => onRow(r) : null },
      columns.map((c) => {
        const v = c.get(r);
        return el("td", { class: c.num ? "num" : null }, v === null || v === undefined ? "–" : v);
      }));
    return tr;
  });
  if (!rows.length) body.push(el("tr", {}, el("td", { colspan: columns.length, class: "muted", text: "Nothing to show." })));
  return el("table", { id }, el("thead", {}, head), el("tbody", {}, body));
}

// A form's named fields as an object of trimmed strings (empty fields left out).
export function fields(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) {
    const s = String(v).trim();
    if (s) out[k] = s;
  }
  return out;
}

export function input(name, label, attrs = {}) {
  return el("label", {}, label, el("input", { name, id: attrs.id || name, ...attrs }));
}

export function select(name, label, options, attrs = {}) {
  return el("label", {}, label, el("select", { name, id: attrs.id || name, ...attrs },
    options.map(([v, t]) => el("option", { value: v, text: t }))));
}

// A button that asks for a second click before doing something that cannot be undone.
export function confirmButton(id, label, action) {
  const b = el("button", { id, type: "button", class: "danger", text: label });
  b.addEventListener("click", async () => {
    if (b.dataset.armed !== "1") { b.dataset.armed = "1"; b.textContent = `Confirm ${label.toLowerCase()}`; return; }
    b.disabled = true;
    await action();
  });
  return b;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// The banner at the top of the page: what went wrong, in the API's own words.
export function reportError(err) {
  const box = document.getElementById("error");
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
}
