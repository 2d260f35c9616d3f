// The service map: workloads and external endpoints as nodes, calls as
// edges coloured by health; a click shows metrics over time and the
// slowest requests. The map is also written out as lists (text in the DOM).
"use strict";

K.map = { topo: null, nodes: new Map(), selected: null, showIdle: false };

/** A connection with no parsed request and no TCP trouble: hidden unless asked for. */
K.idle = (e) => !(e.requests > 0) && !e.connect_failures && !e.resets && !e.retransmits && !e.drops;

/** The map as shown: without idle connections (and the nodes only they had) unless asked for. */
K.visible = function (topo) {
  if (K.map.showIdle) return topo;
  const edges = topo.edges.filter((e) => !K.idle(e));
  const used = new Set(edges.flatMap((e) => [e.src, e.dst]));
  return Object.assign({}, topo, { edges, nodes: topo.nodes.filter((n) => used.has(n.id)), hidden: topo.edges.length - edges.length });
};

const NODE_W = 156, NODE_H = 46, COL_W = 252, ROW_H = 78, MARGIN = 20;

/** Columns by longest path from the callers; rows ordered to limit crossings. */
K.layout = function (topo) {
  const ids = topo.nodes.map((n) => n.id);
  for (const e of topo.edges) for (const id of [e.src, e.dst]) if (!ids.includes(id)) ids.push(id);
  // Back edges (calls that close a cycle) are left out of the layering.
  const out = new Map(ids.map((id) => [id, []]));
  for (const e of topo.edges) if (e.src !== e.dst) out.get(e.src).push(e.dst);
  const state = new Map(); // 1: on the DFS stack, 2: done
  const forward = new Set();
  const hasIn = new Set(topo.edges.filter((e) => e.src !== e.dst).map((e) => e.dst));
  const roots = ids.filter((id) => !hasIn.has(id)).concat(ids.filter((id) => hasIn.has(id)));
  for (const root of roots) {
    if (state.has(root)) continue;
    const stack = [[root, 0]];
    state.set(root, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const next = out.get(top[0])[top[1]++];
      if (next === undefined) { state.set(top[0], 2); stack.pop(); continue; }
      if (state.get(next) === 1) continue; // a back edge
      forward.add(top[0] + "|" + next);
      if (!state.has(next)) { state.set(next, 1); stack.push([next, 0]); }
    }
  }
  const layer = new Map(ids.map((id) => [id, 0]));
  for (let it = 0; it < ids.length; it++) {
    let changed = false;
    for (const e of topo.edges) {
      if (!forward.has(e.src + "|" + e.dst)) continue;
      const l = layer.get(e.src) + 1;
      if (l > layer.get(e.dst)) { layer.set(e.dst, l); changed = true; }
    }
    if (!changed) break;
  }
  const cols = [];
  for (const id of ids) (cols[layer.get(id)] = cols[layer.get(id)] || []).push(id);
  for (let c = cols.length - 1; c >= 0; c--) if (!cols[c]) cols.splice(c, 1);
  const order = new Map();
  cols.forEach((col, c) => {
    if (!col) return;
    const bary = (id) => {
      const preds = topo.edges.filter((e) => e.dst === id && order.has(e.src)).map((e) => order.get(e.src));
      return preds.length ? preds.reduce((a, b) => a + b, 0) / preds.length : Infinity;
    };
    col.sort((a, b) => bary(a) - bary(b) || K.nodeName(a, K.map.nodes).localeCompare(K.nodeName(b, K.map.nodes)));
    col.forEach((id, i) => order.set(id, i));
  });
  const rows = Math.max(1, ...cols.map((c) => (c ? c.length : 0)));
  const pos = new Map();
  cols.forEach((col, c) => {
    if (!col) return;
    const off = ((rows - col.length) * ROW_H) / 2;
    col.forEach((id, i) => pos.set(id, { x: MARGIN + c * COL_W, y: MARGIN + off + i * ROW_H, col: c }));
  });
  return { pos, width: MARGIN * 2 + (cols.length - 1) * COL_W + NODE_W, height: MARGIN * 2 + rows * ROW_H + 40 };
};

/** How an edge looks: health class, width, label and texts. */
K.edgeLook = function (e, nodes, selected) {
  const h = K.health(e);
  // Short lines, to fit between two columns of nodes.
  const label = e.requests > 0
    ? [`${e.protocol} ${K.rate(e.rps)}`, `p99 ${K.ms(e.p99_ms)}`, e.errors ? `${K.pct(e.error_rate)} errors` : null]
    : K.idle(e) ? null : [`tcp :${e.dst_port}`, h.why[0]];
  return {
    cls: "edge " + h.level + (selected ? " selected" : ""),
    width: (1.5 + Math.min(5, Math.log10(1 + (e.rps || 0)) * 2)).toFixed(1),
    marker: `url(#arrow-${selected ? "sel" : h.level})`,
    label,
    aria: "Edge " + K.edgeText(e, nodes),
    title: K.edgeText(e, nodes) + (h.why.length ? "\n" + h.why.join(", ") : ""),
  };
};

/** An edge label's lines as tspans. */
K.setLabel = function (text, lines) {
  const x = text.getAttribute("x");
  text.replaceChildren(...lines.filter(Boolean).map((l, i) => K.el("tspan", { x, dy: i ? "1.25em" : 0 }, l)));
};

K.renderMap = function (topo) {
  const box = K.$("#map");
  const nodes = K.map.nodes;
  if (!topo.edges.length) {
    K.map.sig = null;
    box.replaceChildren(K.el("div", { class: "empty" }, "No traffic in this window yet. The map fills in as services talk to each other."));
    return;
  }
  const sel = K.map.selected;
  const isSel = (e) => sel && sel.type === "edge" && sel.key === K.edgeKey(e);
  // Same nodes and edges as shown: update in place, so the map does not
  // flicker and what the pointer is on stays put.
  const sig = JSON.stringify([topo.nodes.map((n) => [n.id, n.name, n.kind, n.ip]), topo.edges.map(K.edgeKey), sel]);
  if (sig === K.map.sig && box.querySelector("svg")) {
    for (const e of topo.edges) {
      const r = K.map.refs.get(K.edgeKey(e));
      if (!r) continue;
      const look = K.edgeLook(e, nodes, isSel(e));
      r.g.setAttribute("class", look.cls);
      r.g.setAttribute("aria-label", look.aria);
      r.title.textContent = look.title;
      r.line.setAttribute("stroke-width", look.width);
      r.line.setAttribute("marker-end", look.marker);
      if (r.text && look.label) K.setLabel(r.text, look.label);
    }
    return;
  }
  K.map.sig = sig;
  K.map.refs = new Map();
  const { pos, width, height } = K.layout(topo);
  const svg = K.el("svg", { viewBox: `0 0 ${width} ${height}`, "aria-label": "Service map: " + topo.nodes.length + " nodes, " + topo.edges.length + " edges" });
  const defs = K.el("defs");
  for (const [cls, color] of [["ok", "#2f9e44"], ["warn", "#e8a317"], ["bad", "#d6336c"], ["sel", "#1c7ed6"]]) {
    const m = document.createElementNS(K.SVG, "marker");
    for (const [k, v] of Object.entries({ id: "arrow-" + cls, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" })) m.setAttribute(k, v);
    m.append(K.el("path", { d: "M0 0 L10 5 L0 10 z", fill: color }));
    defs.append(m);
  }
  svg.append(defs);
  // Edges between the same pair of nodes fan out.
  const pairCount = new Map();
  const edgesG = K.el("g", { class: "edges" });
  const labelsG = K.el("g", { class: "labels" });
  const labels = [];
  // The busiest edges are drawn last: on top, where a click finds them.
  const order = [...topo.edges].sort((x, y) => (x.requests > 0) - (y.requests > 0) || (x.rps || 0) - (y.rps || 0));
  for (const e of order) {
    const a = pos.get(e.src), b = pos.get(e.dst);
    if (!a || !b) continue;
    const pair = e.src + "|" + e.dst;
    const k = pairCount.get(pair) || 0;
    pairCount.set(pair, k + 1);
    const key = K.edgeKey(e);
    const look = K.edgeLook(e, nodes, isSel(e));
    let d, lx, ly;
    if (b.col > a.col) {
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2 + k * 8, x2 = b.x - 2, y2 = b.y + NODE_H / 2 + k * 8;
      const dx = (x2 - x1) / 2;
      d = `M${x1} ${y1} C${x1 + dx} ${y1} ${x2 - dx} ${y2} ${x2} ${y2}`;
      lx = (x1 + x2) / 2; ly = (y1 + y2) / 2 - 6 + k * 14;
    } else {
      // Same column or backwards: a loop under the nodes.
      const x1 = a.x + NODE_W / 2 + k * 10, y1 = a.y + NODE_H, x2 = b.x + NODE_W / 2 + k * 10, y2 = b.y + NODE_H + 2;
      const sag = 50 + k * 14;
      d = `M${x1} ${y1} C${x1} ${y1 + sag} ${x2} ${y2 + sag} ${x2} ${y2}`;
      lx = (x1 + x2) / 2; ly = Math.max(y1, y2) + sag * 0.75;
    }
    const pick = () => K.select({ type: "edge", key });
    const title = K.el("title", {}, look.title);
    const line = K.el("path", { class: "line", d, "stroke-width": look.width, "marker-end": look.marker });
    const g = K.el("g", {
      class: look.cls, role: "button", tabindex: 0, "aria-label": look.aria, "data-edge": key,
      onclick: pick, onkeydown: (ev) => { if (ev.key === "Enter") pick(); },
    }, title, K.el("path", { class: "hit", d }), line);
    edgesG.append(g);
    const text = look.label ? K.el("text", { x: lx, y: ly - 7, "text-anchor": "middle", class: "edge-label", "data-edge": key, onclick: pick }) : null;
    if (text) {
      K.setLabel(text, look.label);
      const w = Math.max(...look.label.filter(Boolean).map((l) => l.length)) * 6.9;
      labels.push({ text, x: lx, y: ly - 7, w, rank: [isSel(e) ? 0 : 1, e.requests > 0 ? 0 : 1, -(e.rps || 0)] });
    }
    K.map.refs.set(key, { g, line, title, text });
  }
  // Labels that would overlap a node or a more important label are left out
  // (the edge keeps its tooltip, its accessible label and its line in the list).
  const boxes = [...pos.values()].map((p) => [p.x, p.y, p.x + NODE_W, p.y + NODE_H]);
  labels.sort((a, b) => a.rank[0] - b.rank[0] || a.rank[1] - b.rank[1] || a.rank[2] - b.rank[2]);
  for (const l of labels) {
    const r = [l.x - l.w / 2, l.y - 13, l.x + l.w / 2, l.y + 4 + 16 * (l.text.childNodes.length - 1)];
    if (boxes.some((b) => r[0] < b[2] && b[0] < r[2] && r[1] < b[3] && b[1] < r[3])) continue;
    boxes.push(r);
    labelsG.append(l.text);
  }
  const nodesG = K.el("g", { class: "nodes" });
  for (const [id, p] of pos) {
    const n = nodes.get(id) || { id, name: K.nodeName(id), kind: id.split(":")[0] };
    const name = n.name || id;
    const short = name.length > 20 ? name.slice(0, 19) + "…" : name;
    const selected = sel && sel.type === "node" && sel.id === id;
    const sub = n.kind === "external" ? "external" : [n.kind, n.ip].filter(Boolean).join(" · ");
    nodesG.append(K.el("g", {
      class: "node " + (n.kind || "") + (selected ? " selected" : ""), transform: `translate(${p.x},${p.y})`,
      role: "button", tabindex: 0, "aria-label": "Node " + name + " (" + (n.kind || "unknown") + ")", "data-node": id,
      onclick: () => K.select({ type: "node", id }),
      onkeydown: (ev) => { if (ev.key === "Enter") K.select({ type: "node", id }); },
    },
      K.el("title", {}, name + "\n" + id),
      K.el("rect", { width: NODE_W, height: NODE_H, rx: 6 }),
      K.el("text", { x: 10, y: 19 }, short),
      K.el("text", { x: 10, y: 36, class: "kind" }, sub.length > 24 ? sub.slice(0, 23) + "…" : sub)));
  }
  svg.append(edgesG, labelsG, nodesG);
  // Scaled to the box, but never so small that the text is hard to read:
  // a wide map scrolls instead.
  const scale = Math.min(1.2, Math.max(0.85, (box.clientWidth - 4) / width));
  svg.style.width = Math.round(width * scale) + "px";
  box.replaceChildren(svg);
};

K.renderLists = function (topo) {
  const nodes = K.map.nodes;
  const sel = K.map.selected;
  const edges = [...topo.edges].sort((a, b) => (b.rps || 0) - (a.rps || 0));
  K.$("#edge-list").replaceChildren(...edges.map((e) => {
    const h = K.health(e);
    return K.el("li", {
      class: sel && sel.type === "edge" && sel.key === K.edgeKey(e) ? "selected" : "", "data-edge": K.edgeKey(e), tabindex: 0,
      onclick: () => K.select({ type: "edge", key: K.edgeKey(e) }),
    }, K.el("span", { class: "dot " + h.level, title: h.why.join(", ") || "healthy" }), K.edgeText(e, nodes));
  }));
  K.$("#node-list").replaceChildren(...topo.nodes.map((n) => {
    const inb = topo.edges.filter((e) => e.dst === n.id).reduce((a, e) => a + (e.rps || 0), 0);
    const out = topo.edges.filter((e) => e.src === n.id).reduce((a, e) => a + (e.rps || 0), 0);
    return K.el("li", {
      class: sel && sel.type === "node" && sel.id === n.id ? "selected" : "", "data-node": n.id, tabindex: 0,
      onclick: () => K.select({ type: "node", id: n.id }),
    }, `${n.name} (${n.kind}) · in ${K.rate(inb)} · out ${K.rate(out)}`);
  }));
};

K.select = function (sel) {
  K.map.selected = sel;
  if (K.map.topo) { K.renderMap(K.map.topo); K.renderLists(K.map.topo); }
  K.renderDetail(true);
};

/** Slowest stored requests for `params`, as a clickable table. */
K.slowestTable = async function (params, title) {
  const rows = await K.api("/api/v1/ui/requests", Object.assign({ sort: "slowest", limit: 10, window: K.window() }, params));
  const nodes = K.map.nodes;
  const body = rows.map((r) => K.el("tr", {
    onclick: () => { location.hash = "#/requests?" + new URLSearchParams(Object.assign({}, params, { id: r.id })); },
    title: "Show this request's breakdown",
  },
    K.el("td", {}, K.time(r.end_ts_ns)),
    K.el("td", { class: "ep" }, K.reqName(r),
      r.is_error ? K.el("span", { class: "badge err" }, " " + r.status) : null),
    K.el("td", { class: "small" }, r.side),
    K.el("td", { class: "num" }, K.ns(r.duration_ns))));
  const link = K.el("a", { href: "#/requests?" + new URLSearchParams(params) }, "All stored requests →");
  return K.el("div", { class: "slowest" },
    K.el("h3", {}, title + " (" + rows.length + ")"),
    rows.length
      ? K.el("table", { class: "grid", id: "slowest-table" }, K.el("thead", {}, K.el("tr", {}, K.el("th", {}, "Time"), K.el("th", {}, "Request"), K.el("th", {}, "Side"), K.el("th", { class: "num" }, "Duration"))), K.el("tbody", {}, body))
      : K.el("p", { class: "muted" }, "No stored requests in this window yet."),
    link, nodes ? null : null);
};

K.seriesSource = (s) => (s.source === "live" ? "live, " + s.step_s + " s steps" : "stored, " + s.step_s / 60 + " min steps");

K.tile = (label, value) => K.el("div", { class: "tile" }, K.el("b", {}, value), K.el("span", {}, label));

K.renderDetail = async function (fresh) {
  const box = K.$("#detail");
  const sel = K.map.selected;
  const topo = K.map.topo;
  if (!sel || !topo) {
    box.replaceChildren(K.el("h2", {}, "Service map"),
      K.el("p", {}, topo ? `${topo.nodes.length} nodes and ${topo.edges.length} edges over the last ${K.windowLabel()}.` : "Loading…"),
      K.el("p", { class: "muted" }, "Click a node or an edge for its metrics over time and its slowest requests."));
    return;
  }
  if (fresh) box.replaceChildren(K.el("p", { class: "muted" }, "Loading…"));
  try {
    const parts = sel.type === "edge" ? await K.edgeDetail(sel) : await K.nodeDetail(sel);
    if (K.map.selected !== sel) return; // the selection changed meanwhile
    box.replaceChildren(...parts);
  } catch (e) {
    box.replaceChildren(K.el("p", { class: "muted" }, "Could not load the details: " + e.message));
  }
};

K.edgeDetail = async function (sel) {
  const topo = K.map.topo, nodes = K.map.nodes;
  const e = topo.edges.find((x) => K.edgeKey(x) === sel.key);
  if (!e) return [K.el("h2", {}, "Edge"), K.el("p", { class: "muted" }, "This edge had no traffic in the window.")];
  const h = K.health(e);
  const [series, slowest] = await Promise.all([
    K.api("/api/v1/ui/series", { src: e.src, dst: e.dst, protocol: e.protocol, dst_port: e.dst_port, window: K.window() }),
    K.slowestTable({ src: e.src, dst: e.dst, protocol: e.protocol }, "Slowest requests"),
  ]);
  const tcp = [];
  if (e.retransmits !== undefined) tcp.push(K.tile("Retransmits", e.retransmits));
  if (e.rtt_ms !== undefined && e.rtt_ms !== null) tcp.push(K.tile("Smoothed RTT", K.ms(e.rtt_ms)));
  if (e.resets !== undefined) tcp.push(K.tile("Resets", e.resets));
  if (e.drops !== undefined) tcp.push(K.tile("Drops", e.drops));
  if (e.connect_failures !== undefined) tcp.push(K.tile("Failed connects", e.connect_failures));
  return [
    K.el("h2", {}, K.nodeName(e.src, nodes), " → ", K.nodeName(e.dst, nodes)),
    K.el("div", { class: "small" }, K.el("span", { class: "dot " + h.level }), `${e.protocol} to port ${e.dst_port}`, h.why.length ? " · " + h.why.join(", ") : " · healthy"),
    K.el("div", { class: "tiles" },
      K.tile("Requests/s", K.rate(e.rps)), K.tile("Error rate", K.pct(e.error_rate || 0)), K.tile("Requests", e.requests),
      K.tile("p50", K.ms(e.p50_ms)), K.tile("p95", K.ms(e.p95_ms)), K.tile("p99", K.ms(e.p99_ms)),
      K.tile("Sent", K.bytes(e.bytes_sent)), K.tile("Received", K.bytes(e.bytes_received)), K.tile("Slow", e.slow || 0)),
    tcp.length ? K.el("h3", {}, "TCP health") : null,
    tcp.length ? K.el("div", { class: "tiles" }, tcp) : null,
    K.el("h3", {}, "Over time (" + K.seriesSource(series) + ")"),
    ...K.seriesCharts(series),
    slowest,
  ];
};

K.nodeDetail = async function (sel) {
  const topo = K.map.topo, nodes = K.map.nodes;
  const n = nodes.get(sel.id) || { id: sel.id, name: K.nodeName(sel.id), kind: "" };
  const inE = topo.edges.filter((e) => e.dst === n.id), outE = topo.edges.filter((e) => e.src === n.id);
  const sum = (es, f) => es.reduce((a, e) => a + (e[f] || 0), 0);
  const maxP99 = (es) => es.reduce((a, e) => Math.max(a, e.p99_ms || 0), 0);
  const direction = inE.length ? "inbound" : "outbound";
  const [series, slowest] = await Promise.all([
    K.api("/api/v1/ui/series", { node: n.id, direction, window: K.window() }),
    K.slowestTable(inE.length ? { dst: n.id } : { node: n.id }, inE.length ? "Slowest requests it served" : "Slowest requests it made"),
  ]);
  const kv = (k, v) => (v ? [K.el("dt", {}, k), K.el("dd", {}, v)] : []);
  return [
    K.el("h2", {}, n.name),
    K.el("dl", { class: "kv" }, kv("Id", n.id), kv("Kind", n.kind), kv("Address", n.ip), kv("Container", n.container_id)),
    K.el("div", { class: "tiles" },
      K.tile("Served/s", K.rate(sum(inE, "rps"))), K.tile("Errors served", sum(inE, "errors")), K.tile("p99 served (max)", K.ms(maxP99(inE))),
      K.tile("Calls/s made", K.rate(sum(outE, "rps"))), K.tile("Errors in calls", sum(outE, "errors")), K.tile("p99 of calls (max)", K.ms(maxP99(outE)))),
    K.el("h3", {}, (direction === "inbound" ? "Calls served" : "Calls made") + " over time (" + K.seriesSource(series) + ")"),
    ...K.seriesCharts(series),
    slowest,
  ];
};

K.refreshMap = async function () {
  const all = await K.api("/api/v1/ui/map", { window: K.window() });
  const topo = K.visible(all);
  K.map.topo = topo;
  const note = K.$("#idle-note");
  note.replaceChildren(topo.hidden ? `${topo.hidden} idle connections without requests are hidden. ` : "",
    K.el("label", {}, K.el("input", { type: "checkbox", checked: K.map.showIdle, onchange: (ev) => { K.map.showIdle = ev.target.checked; K.refreshMap(); } }), " show them"));
  K.map.nodes = new Map(all.nodes.map((n) => [n.id, n]));
  K.renderMap(topo);
  K.renderLists(topo);
  await K.renderDetail(false);
};
