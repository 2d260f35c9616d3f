// Shared helpers: DOM building, the API, number formats, health, charts.
"use strict";

const K = {};

K.SVG = "http://www.w3.org/2000/svg";

/** An element: el("div", {class: "x", onclick: f}, child, "text", ...). */
K.el = function (tag, attrs, ...children) {
  const svg = ["svg", "g", "path", "rect", "text", "title", "line", "circle", "polyline", "tspan"].includes(tag);
  const e = svg ? document.createElementNS(K.SVG, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
};

K.$ = (sel, root) => (root || document).querySelector(sel);

/** GET a JSON API; throws an Error with the API's message. */
K.api = async function (path, params) {
  const qs = params ? "?" + new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "")) : "";
  let resp;
  try {
    resp = await fetch(path + qs, { headers: { Accept: "application/json" } });
  } catch (e) {
    throw new Error("the agent does not answer (" + e.message + ")");
  }
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const err = new Error((body && body.error) || resp.status + " " + resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return body;
};

K.banner = function (msg) {
  const b = K.$("#banner");
  if (!msg) { b.hidden = true; b.textContent = ""; return; }
  b.hidden = false;
  b.textContent = msg;
};

// ---- formats ---------------------------------------------------------------

K.ms = function (ms) {
  if (ms === undefined || ms === null || isNaN(ms)) return "–";
  if (ms >= 10000) return (ms / 1000).toFixed(1) + " s";
  if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
  if (ms >= 100) return ms.toFixed(0) + " ms";
  if (ms >= 10) return ms.toFixed(1) + " ms";
  if (ms >= 1) return ms.toFixed(2) + " ms";
  return (ms * 1000).toFixed(0) + " µs";
};
K.ns = (ns) => K.ms(ns / 1e6);
K.rate = (r) => (r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)) + "/s";
K.pct = (f) => (f * 100 >= 10 ? (f * 100).toFixed(0) : (f * 100).toFixed(1)) + "%";
K.bytes = function (b) {
  if (!b) return "0 B";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b.toFixed(0)) + " " + u[i];
};
K.time = function (ns) {
  if (!ns) return "–";
  const d = new Date(ns / 1e6);
  const p = (n, w) => String(n).padStart(w || 2, "0");
  return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds()) + "." + p(d.getMilliseconds(), 3);
};
K.dateTime = function (ns) {
  if (!ns) return "–";
  const d = new Date(ns / 1e6);
  return d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + K.time(ns);
};

/** A node's display name from its id (`process:python3 app.py` -> `python3 app.py`). */
K.nodeName = function (id, nodes) {
  const n = nodes && nodes.get && nodes.get(id);
  if (n && n.name) return n.name;
  const i = String(id).indexOf(":");
  return i >= 0 ? id.slice(i + 1) : id;
};

/** "GET /users/{id}"; the method is left out when the endpoint starts with it (SQL, Redis). */
K.reqName = function (r) {
  const ep = r.endpoint || r.protocol || "request";
  const m = r.method || "";
  return m && !ep.toUpperCase().startsWith(m.toUpperCase()) ? m + " " + ep : ep;
};

// ---- health ----------------------------------------------------------------

/** Slow thresholds (ms) per protocol, as the agent's defaults. */
K.SLOW_MS = { http: 500, http2: 500, grpc: 500, mysql: 100, postgresql: 100, redis: 100, kafka: 100, dns: 100, memcached: 100, tcp: Infinity };

/** "ok" | "warn" | "bad" and the reasons, from errors, latency and TCP health. */
K.health = function (e) {
  const why = [];
  let level = 0;
  const bump = (l, w) => { level = Math.max(level, l); why.push(w); };
  if (e.requests > 0) {
    if (e.error_rate >= 0.05) bump(2, K.pct(e.error_rate) + " errors");
    else if (e.errors > 0) bump(1, e.errors + " errors");
    const slow = K.SLOW_MS[e.protocol] || 500;
    if (e.p99_ms >= slow) bump(1, "p99 " + K.ms(e.p99_ms));
  }
  if (e.connect_failures > 0) bump(2, e.connect_failures + " failed connects");
  if (e.resets > 0) bump(e.resets > 5 ? 2 : 1, e.resets + " resets");
  if (e.retransmits > 0) bump(1, e.retransmits + " retransmits");
  if (e.drops > 0) bump(1, e.drops + " drops");
  return { level: ["ok", "warn", "bad"][level], why };
};

/** The text of an edge for lists and labels. */
K.edgeText = function (e, nodes) {
  const parts = [K.nodeName(e.src, nodes) + " → " + K.nodeName(e.dst, nodes), e.protocol + " :" + e.dst_port];
  if (e.requests > 0) {
    parts.push(K.rate(e.rps), "p99 " + K.ms(e.p99_ms), K.pct(e.error_rate) + " errors");
  } else {
    parts.push("no requests");
  }
  if (e.retransmits) parts.push(e.retransmits + " retransmits");
  if (e.rtt_ms !== undefined && e.rtt_ms !== null) parts.push("RTT " + K.ms(e.rtt_ms));
  if (e.resets) parts.push(e.resets + " resets");
  if (e.drops) parts.push(e.drops + " drops");
  if (e.connect_failures) parts.push(e.connect_failures + " failed connects");
  return parts.join(" · ");
};

K.edgeKey = (e) => [e.src, e.dst, e.protocol, e.dst_port].join("|");

// ---- charts ----------------------------------------------------------------

/**
 * A small time chart of points [{ts_ns, ...}]: `value(p)` per point (null: a
 * gap), drawn as an area (kind "area"/"err") or a line ("lat").
 */
K.chart = function (title, points, value, fmt, kind) {
  const W = 400, H = 70, pad = 2;
  const vals = points.map(value);
  const max = Math.max(0, ...vals.filter((v) => v !== null && !isNaN(v)));
  const n = points.length;
  const x = (i) => (n <= 1 ? W / 2 : pad + (i * (W - 2 * pad)) / (n - 1));
  const y = (v) => H - pad - (max > 0 ? (v / max) * (H - 2 * pad - 8) : 0);
  let d = "";
  if (kind === "lat") {
    let pen = false;
    vals.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1) + " ";
      pen = true;
    });
  } else if (n > 0) {
    d = "M" + x(0) + " " + (H - pad) + " ";
    vals.forEach((v, i) => { d += "L" + x(i).toFixed(1) + " " + y(v || 0).toFixed(1) + " "; });
    d += "L" + x(n - 1) + " " + (H - pad) + " Z";
  }
  const last = [...vals].reverse().find((v) => v !== null && v !== undefined);
  // A latency point without neighbours would draw no line: a dot instead.
  const dots = kind === "lat" ? vals.map((v, i) => (v !== null && v !== undefined && (vals[i - 1] === null || vals[i - 1] === undefined) && (vals[i + 1] === null || vals[i + 1] === undefined)
    ? K.el("rect", { x: x(i) - 2, y: y(v) - 2, width: 4, height: 4, class: "dot-lat" }) : null)) : [];
  const svg = K.el("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": title },
    d ? K.el("path", { d, class: kind || "area" }) : null, dots);
  return K.el("div", { class: "chart" },
    K.el("div", { class: "title" }, K.el("span", {}, title), K.el("span", {}, "max " + fmt(max) + (last !== undefined ? " · last " + fmt(last) : ""))),
    svg);
};

/** Charts of a series answer {step_s, points}. */
K.seriesCharts = function (s) {
  const step = s.step_s || 60;
  const pts = s.points || [];
  return [
    K.chart("Requests per second", pts, (p) => p.requests / step, K.rate, "area"),
    K.chart("p99 latency", pts, (p) => (p.p99_ms === undefined ? null : p.p99_ms), K.ms, "lat"),
    K.chart("Errors per second", pts, (p) => p.errors / step, K.rate, "err"),
  ];
};

// ---- a request's breakdown ---------------------------------------------------

/** The waterfall of a request record's network breakdown. */
K.waterfall = function (r) {
  const b = r.breakdown || {};
  const server = r.side === "server";
  const steps = server
    ? [["Reading request", b.request_sent_ns, "wf-send"], ["Processing", b.waiting_ttfb_ns, "wf-wait"], ["Writing response", b.content_download_ns, "wf-download"]]
    : [["Connect", b.connect_ns, "wf-connect"], ["Request sent", b.request_sent_ns, "wf-send"], ["Waiting (TTFB)", b.waiting_ttfb_ns, "wf-wait"], ["Content download", b.content_download_ns, "wf-download"]];
  const total = Math.max(r.duration_ns || 0, steps.reduce((a, s) => a + (s[1] || 0), 0), 1);
  let at = 0;
  const rows = steps.map(([label, ns, cls]) => {
    ns = ns || 0;
    const left = (at / total) * 100, width = (ns / total) * 100;
    at += ns;
    return K.el("div", { class: "wf-row" },
      K.el("span", {}, label),
      K.el("div", { class: "wf-track" }, K.el("div", { class: "wf-bar " + cls, style: `left:${left.toFixed(2)}%;width:${width.toFixed(2)}%`, title: label + " " + K.ns(ns) })),
      K.el("span", { class: "num" }, K.ns(ns)));
  });
  return K.el("div", { class: "waterfall", role: "group", "aria-label": "Network breakdown" }, rows);
};

/** Details of one request record (stored or live). */
K.requestDetail = function (r, nodes) {
  const kv = (k, v) => [K.el("dt", {}, k), K.el("dd", {}, v === undefined || v === null || v === "" ? "–" : v)];
  const flags = [r.is_error ? K.el("span", { class: "badge err" }, "error") : null, r.is_slow ? K.el("span", { class: "badge slow" }, "slow") : null];
  const traceLink = r.trace_id
    ? K.el("span", {}, K.el("a", { href: "#/trace/" + encodeURIComponent(r.trace_id), title: "Open its trace-profile" }, r.trace_id), " ",
      K.el("a", { href: "#/requests?trace_id=" + encodeURIComponent(r.trace_id), class: "small" }, "(all requests)"))
    : "";
  const tcp = r.tcp && (r.tcp.retransmits || r.tcp.srtt_us) ? `${r.tcp.retransmits} retransmits, RTT ${K.ms(r.tcp.srtt_us / 1000)}` : "";
  return K.el("div", { class: "request-detail" },
    K.el("h2", {}, K.reqName(r), " ", flags),
    K.el("div", { class: "summary" }, K.ns(r.duration_ns), " · ", r.protocol, " · ", r.side, " side · status ", String(r.status)),
    K.el("h3", {}, "Network breakdown"),
    K.waterfall(r),
    K.el("dl", { class: "kv" },
      kv("Edge", r.src_node ? K.nodeName(r.src_node, nodes) + " → " + K.nodeName(r.dst_node, nodes) : ""),
      kv("Client", r.src), kv("Server", r.dst),
      kv("Process", `${r.comm} (pid ${r.pid}, tid ${r.tid})`),
      kv("Started", K.dateTime(r.start_ts_ns)),
      kv("Detail", r.detail), r.is_error ? kv("Error", r.error) : null,
      kv("Bytes", `${K.bytes(r.request_bytes)} sent, ${K.bytes(r.response_bytes)} received`),
      kv("TCP", tcp),
      kv("Trace id", traceLink), kv("Trace type", r.trace_type)));
};
