// Charts drawn as SVG with DOM calls: bars for counts and money, lines for latency. No library;
// attributes only (no inline style), so the content security policy holds.
const NS = "http://www.w3.org/2000/svg";
const W = 520, H = 180, L = 48, B = 22, T = 8;

function svg(tag, attrs, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

// series: [{t, ...}], keys: [{key, label, cls}], kind: "bar" | "line", fmt: value -> text.
export function chart(id, title, series, keys, kind, fmt) {
  const box = document.createElement("div");
  box.className = "chart";
  box.id = id;
  const h = document.createElement("h3");
  h.textContent = title;
  const legend = document.createElement("div");
  legend.className = "legend";
  keys.forEach((k, i) => { const s = document.createElement("span"); s.className = `k${i + 1}`; s.textContent = `■ ${k.label}`; legend.append(s); });
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  const values = series.flatMap((p) => keys.map((k) => Number(p[k.key] || 0)));
  const max = niceMax(Math.max(0, ...values));
  const plotW = W - L - 4, plotH = H - B - T;
  const y = (v) => T + plotH - (plotH * v) / max;
  root.append(svg("line", { x1: L, y1: T + plotH, x2: W - 4, y2: T + plotH, class: "axis" }));
  const seen = new Set();
  for (const f of [0, 0.5, 1]) {
    const label = fmt(max * f);
    if (seen.has(label)) continue; // integer axes with a small maximum: no repeated labels
    seen.add(label);
    root.append(svg("text", { x: L - 4, y: y(max * f) + 3, "text-anchor": "end" }, label));
    if (f) root.append(svg("line", { x1: L, y1: y(max * f), x2: W - 4, y2: y(max * f), class: "axis" }));
  }
  const n = Math.max(1, series.length);
  const step = plotW / n;
  if (kind === "bar") {
    const bw = Math.min(24, Math.max(1, (step * 0.8) / keys.length));
    series.forEach((p, i) => keys.forEach((k, j) => {
      const v = Number(p[k.key] || 0);
      const x = L + i * step + (step - bw * keys.length) / 2 + j * bw;
      const r = svg("rect", { x, y: y(v), width: bw, height: T + plotH - y(v),
                              class: `bar ${k.cls || ""}` });
      r.append(svg("title", {}, `${p.t}: ${k.label} ${fmt(v)}`));
      root.append(r);
    }));
  } else {
    keys.forEach((k) => {
      const pts = series.map((p, i) => (p[k.key] === null || p[k.key] === undefined ? null
        : `${(L + i * step + step / 2).toFixed(1)},${y(Number(p[k.key])).toFixed(1)}`)).filter(Boolean);
      if (pts.length) root.append(svg("polyline", { points: pts.join(" "), class: `line ${k.cls || ""}` }));
    });
  }
  if (series.length) {
    root.append(svg("text", { x: L, y: H - 6 }, series[0].t));
    root.append(svg("text", { x: W - 4, y: H - 6, "text-anchor": "end" }, series[series.length - 1].t));
  }
  box.append(h, legend, root);
  return box;
}
