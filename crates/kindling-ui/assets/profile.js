// Trace-profiles (the /api/v1/profiles/{id} shape of PRODUCT.md): thread
// lanes over time with on/off-CPU slices coloured by state, the downstream
// calls, the stacks of a clicked slice, the triage verdict and a flame graph.
"use strict";

K.STATES = ["oncpu", "net", "file", "lock", "epoll", "sleep", "runqueue", "other"];
K.STATE_LABEL = { oncpu: "on-CPU (app code)", net: "network / downstream", file: "file I/O", lock: "locks", epoll: "epoll wait", sleep: "sleep", runqueue: "CPU starvation (run queue)", other: "other" };
K.stateOf = (s) => (K.STATES.includes(s) ? s : "other");

/** A frame's text: frames are strings or objects ({name|function|symbol, module|file, line}). */
K.frameName = function (f) {
  if (f === null || f === undefined) return "?";
  if (typeof f !== "object") return String(f);
  const name = f.name || f.function || f.symbol || f.func || "?";
  const where = f.module || f.file || f.library || "";
  return where ? `${name} (${where}${f.line ? ":" + f.line : ""})` : name;
};

K.prof = { data: null, slice: null, flameMode: "all", zoom: [] };

K.refreshProfiles = async function () {
  const box = K.$("#profiles");
  const list = await K.api("/api/v1/profiles", { limit: 200 });
  const rows = list.map((p) => K.el("tr", { onclick: () => { location.hash = "#/profile/" + encodeURIComponent(p.id); } },
    K.el("td", { class: "small" }, K.dateTime(p.start_ts_ns)),
    K.el("td", { class: "ep" }, p.endpoint),
    K.el("td", { class: "num" }, K.ns(p.duration_ns)),
    K.el("td", {}, K.el("span", { class: "badge " + (p.kept_because === "error" ? "err" : p.kept_because) }, p.kept_because)),
    K.el("td", { class: "small" }, p.trace_id || "–")));
  box.replaceChildren(K.el("div", { class: "panel" },
    K.el("h2", {}, "Kept trace-profiles"),
    K.el("p", { class: "muted" }, "For each endpoint and window the slowest requests, the failed ones and a baseline keep the per-thread timeline of the request with its stacks. Open one by its trace id at #/trace/<trace id>."),
    list.length
      ? K.el("table", { class: "grid", id: "profiles-table" }, K.el("thead", {}, K.el("tr", {}, K.el("th", {}, "Time"), K.el("th", {}, "Endpoint"), K.el("th", { class: "num" }, "Duration"), K.el("th", {}, "Kept because"), K.el("th", {}, "Trace id"))), K.el("tbody", {}, rows))
      : K.el("p", {}, "No trace-profile has been kept yet.")));
};

/** #/profile/{id} or #/trace/{trace_id}. */
K.openProfile = async function (kind, key) {
  const box = K.$("#profile");
  box.replaceChildren(K.el("p", { class: "muted" }, "Loading…"));
  let p;
  try {
    if (kind === "trace") {
      const list = await K.api("/api/v1/profiles", { trace_id: key, limit: 1 });
      if (!list.length) {
        box.replaceChildren(K.el("div", { class: "panel" }, K.el("h2", {}, "Trace " + key),
          K.el("p", {}, "No trace-profile was kept for this trace id. "),
          K.el("a", { href: "#/requests?trace_id=" + encodeURIComponent(key) }, "Its stored requests →")));
        return;
      }
      key = list[0].id;
    }
    p = await K.api("/api/v1/profiles/" + encodeURIComponent(key));
  } catch (e) {
    box.replaceChildren(K.el("div", { class: "panel" }, K.el("h2", {}, "Trace-profile"), K.el("p", {}, e.message)));
    return;
  }
  K.prof = { data: p, slice: null, flameMode: "all", zoom: [] };
  K.renderProfile();
};

K.renderProfile = function () {
  const p = K.prof.data;
  const r = p.request || {};
  const box = K.$("#profile");
  box.replaceChildren(
    K.el("div", { class: "panel" },
      K.el("h2", {}, "Trace-profile: ", K.reqName(r), " ",
        K.el("span", { class: "badge " + (p.kept_because === "error" ? "err" : p.kept_because) }, "kept: " + p.kept_because)),
      K.el("div", { class: "summary" }, K.ns(r.duration_ns || 0), " · ", r.protocol || "", " ", r.side || "", " · status ", String(r.status === undefined ? "–" : r.status),
        " · ", r.comm || "", r.pid ? ` (pid ${r.pid})` : "", " · ", K.dateTime(r.start_ts_ns)),
      p.trace_id ? K.el("div", { class: "small" }, "Trace id ", K.el("a", { href: "#/trace/" + encodeURIComponent(p.trace_id) }, p.trace_id),
        p.trace_type ? " (" + p.trace_type + ")" : "", " · ", K.el("a", { href: "#/requests?trace_id=" + encodeURIComponent(p.trace_id) }, "its requests")) : null),
    K.verdictPanel(p),
    K.el("div", { class: "prof-layout" },
      K.el("div", { class: "panel" }, K.el("h3", {}, "Threads over time"), K.lanes(p), K.stateLegend()),
      K.el("aside", { class: "panel", id: "slice-detail", "aria-label": "Slice details" }, K.sliceDetail())),
    K.el("div", { class: "panel" }, K.el("h3", {}, "Flame graph"), K.flameControls(), K.el("div", { id: "flame" })));
  K.renderFlame();
};

K.stateLegend = () => K.el("div", { class: "verdict-legend" },
  K.STATES.map((s) => K.el("span", {}, K.el("i", { class: "state-sw st-" + s }), K.STATE_LABEL[s])),
  K.el("span", {}, K.el("i", { class: "state-sw", style: "background:#495057" }), "downstream call"));

K.verdictPanel = function (p) {
  const v = p.verdict || {};
  const parts = K.STATES.map((s) => [s, Number(v[s + "_ns"]) || 0]);
  const total = parts.reduce((a, [, n]) => a + n, 0);
  const bar = K.el("div", { class: "verdict-bar", role: "img", "aria-label": "Where the time went" },
    parts.filter(([, n]) => n > 0).map(([s, n]) => K.el("div", { class: "st-" + s, style: `width:${((n / total) * 100).toFixed(2)}%`, title: `${K.STATE_LABEL[s]}: ${K.ns(n)}` })));
  const legend = K.el("div", { class: "verdict-legend" }, parts.filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]).map(([s, n]) =>
    K.el("span", {}, K.el("i", { class: "st-" + s }), `${K.STATE_LABEL[s]} ${K.pct(n / total)} (${K.ns(n)})`)));
  let evidence = null;
  if (v.evidence) {
    const items = Array.isArray(v.evidence) ? v.evidence : Object.entries(v.evidence).map(([k, x]) => k + ": " + (typeof x === "string" ? x : JSON.stringify(x)));
    evidence = K.el("ul", { class: "small" }, items.map((x) => K.el("li", {}, typeof x === "string" ? x : JSON.stringify(x))));
  }
  return K.el("div", { class: "panel", id: "verdict" },
    K.el("h3", {}, "Triage verdict"),
    K.el("div", { class: "summary" }, v.summary || "No verdict."),
    total > 0 ? bar : null, total > 0 ? legend : null, evidence);
};

/** Thread lanes: one row per thread, slices over time, downstream calls under them. */
K.lanes = function (p) {
  const threads = p.threads || [];
  const r = p.request || {};
  let t0 = r.start_ts_ns || Infinity, t1 = r.end_ts_ns || 0;
  for (const t of threads) for (const s of t.slices || []) { t0 = Math.min(t0, s.start_ns); t1 = Math.max(t1, s.end_ns); }
  if (!isFinite(t0) || t1 <= t0) return K.el("p", { class: "muted" }, "No thread activity recorded.");
  // Drawn at the panel's width (1:1), so the text keeps its size.
  const W = Math.max(560, (K.$("#profile").clientWidth || 1240) - 400 - 12 - 30), LABEL = 170, LANE = 24, DOWN = 14, TOP = 26;
  const x = (ns) => LABEL + ((ns - t0) / (t1 - t0)) * (W - LABEL - 10);
  const svg = K.el("svg", { role: "img", "aria-label": "Thread lanes" });
  // Axis.
  const span = t1 - t0;
  const stepNs = [1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 2e7, 5e7, 1e8, 2e8, 5e8, 1e9, 2e9, 5e9, 1e10].find((s) => span / s <= 8) || 1e10;
  for (let t = 0; t <= span; t += stepNs) {
    svg.append(K.el("line", { x1: x(t0 + t), x2: x(t0 + t), y1: 16, y2: 2000, stroke: "#eef0f2" }),
      K.el("text", { x: x(t0 + t), y: 12, class: "axis", "text-anchor": "middle" }, "+" + K.ns(t)));
  }
  if (r.start_ts_ns && r.end_ts_ns) {
    svg.append(K.el("rect", { x: x(r.start_ts_ns), y: 16, width: Math.max(1, x(r.end_ts_ns) - x(r.start_ts_ns)), height: 5, fill: "#1d2329" },
      K.el("title", {}, "The request: " + K.ns(r.duration_ns || r.end_ts_ns - r.start_ts_ns))));
  }
  let y = TOP;
  threads.forEach((t, ti) => {
    const slices = t.slices || [];
    const hasDown = slices.some((s) => (s.downstream || []).length);
    svg.append(K.el("text", { x: 4, y: y + 16 }, ((t.name || "thread") + " (" + t.tid + ")").slice(0, 26)));
    slices.forEach((s, si) => {
      const st = K.stateOf(s.state);
      const sel = K.prof.slice && K.prof.slice[0] === ti && K.prof.slice[1] === si;
      const label = `${K.STATE_LABEL[st]} ${K.ns(s.end_ns - s.start_ns)}` + (s.target ? " · " + s.target : "");
      svg.append(K.el("rect", {
        class: "slice st-" + st + (sel ? " selected" : ""), x: x(s.start_ns), y: y + 2, width: Math.max(1.5, x(s.end_ns) - x(s.start_ns)), height: LANE - 6,
        "data-state": st, tabindex: 0, role: "button", "aria-label": "Slice " + label,
        onclick: () => { K.prof.slice = [ti, si]; K.selectSlice(); },
      }, K.el("title", {}, label)));
      for (const d of s.downstream || []) {
        const ds = d.start_ts_ns || s.start_ns, de = d.end_ts_ns || ds + (d.duration_ns || 0);
        svg.append(K.el("rect", { class: "down", x: x(ds), y: y + LANE, width: Math.max(1.5, x(de) - x(ds)), height: DOWN - 4,
          onclick: () => { K.prof.slice = [ti, si]; K.selectSlice(); } },
          K.el("title", {}, `${d.protocol || ""} ${d.method || ""} ${d.endpoint || ""} → ${d.dst || ""} · ${K.ns(d.duration_ns || de - ds)}`)));
      }
    });
    y += LANE + (hasDown ? DOWN : 0) + 4;
  });
  svg.setAttribute("viewBox", `0 0 ${W} ${y + 4}`);
  svg.setAttribute("width", W);
  svg.setAttribute("height", y + 4);
  return K.el("div", { class: "lanes" }, svg);
};

K.selectSlice = function () {
  for (const e of document.querySelectorAll(".lanes rect.slice")) e.classList.remove("selected");
  const [ti, si] = K.prof.slice;
  const rects = [...document.querySelectorAll(".lanes rect.slice")];
  // The rects are in thread, then slice order.
  let k = 0;
  (K.prof.data.threads || []).forEach((t, i) => (t.slices || []).forEach((s, j) => { if (i === ti && j === si && rects[k]) rects[k].classList.add("selected"); k++; }));
  K.$("#slice-detail").replaceChildren(...[].concat(K.sliceDetail()));
};

K.sliceDetail = function () {
  if (!K.prof.slice) return [K.el("h3", {}, "Slice"), K.el("p", { class: "muted" }, "Click a slice for its stack and the downstream calls made during it.")];
  const [ti, si] = K.prof.slice;
  const t = K.prof.data.threads[ti], s = t.slices[si];
  const st = K.stateOf(s.state);
  const down = s.downstream || [];
  return [
    K.el("h3", {}, "Slice"),
    K.el("div", { class: "summary" }, K.el("i", { class: "state-sw st-" + st }), K.STATE_LABEL[st], " · ", K.ns(s.end_ns - s.start_ns)),
    K.el("dl", { class: "kv" },
      K.el("dt", {}, "Thread"), K.el("dd", {}, `${t.name || ""} (${t.tid})`),
      K.el("dt", {}, "State"), K.el("dd", {}, String(s.state)),
      K.el("dt", {}, "Target"), K.el("dd", {}, s.target || "–"),
      K.el("dt", {}, "From"), K.el("dd", {}, "+" + K.ns(s.start_ns - ((K.prof.data.request || {}).start_ts_ns || s.start_ns)))),
    K.el("h3", {}, "Stack"),
    (s.stack || []).length ? K.el("div", { class: "stack", id: "slice-stack" }, (s.stack || []).map(K.frameName).join("\n")) : K.el("p", { class: "muted" }, "No stack."),
    K.el("h3", {}, "Downstream calls (" + down.length + ")"),
    down.length ? K.el("table", { class: "grid" }, K.el("tbody", {}, down.map((d) => K.el("tr", {},
      K.el("td", {}, d.protocol || ""), K.el("td", { class: "ep" }, K.reqName(d)),
      K.el("td", {}, String(d.status === undefined ? "" : d.status)), K.el("td", { class: "num" }, K.ns(d.duration_ns || 0)))))) : K.el("p", { class: "muted" }, "None."),
  ];
};

// ---- flame graph -------------------------------------------------------------

K.flameControls = function () {
  const mk = (mode, label) => K.el("button", { type: "button", class: K.prof.flameMode === mode ? "on" : "", onclick: () => { K.prof.flameMode = mode; K.prof.zoom = []; K.renderProfile(); } }, label);
  return K.el("div", { class: "flame-controls", id: "flame-controls" },
    K.el("span", { class: "tabs" }, mk("all", "All time"), " ", mk("oncpu", "On-CPU"), " ", mk("offcpu", "Off-CPU")),
    K.prof.zoom.length ? K.el("button", { type: "button", onclick: () => { K.prof.zoom = []; K.renderFlame(); } }, "Reset zoom") : null,
    K.el("span", { class: "muted small" }, "Width: time in the stack (ns of the request's slices). Stacks are listed innermost frame first."));
};

/** Builds the tree {name, value, children: Map} from the slices' stacks. */
K.flameTree = function (p, mode) {
  const root = { name: "all", value: 0, children: new Map() };
  for (const t of p.threads || []) for (const s of t.slices || []) {
    const st = K.stateOf(s.state);
    if (mode === "oncpu" && st !== "oncpu") continue;
    if (mode === "offcpu" && st === "oncpu") continue;
    const w = Math.max(0, s.end_ns - s.start_ns);
    if (!w) continue;
    const frames = (s.stack || []).map(K.frameName).reverse();
    if (st !== "oncpu") frames.push("[" + K.STATE_LABEL[st] + (s.target ? ": " + s.target : "") + "]");
    if (!frames.length) frames.push("[no stack]");
    let node = root;
    root.value += w;
    for (const f of frames) {
      let c = node.children.get(f);
      if (!c) { c = { name: f, value: 0, children: new Map(), state: f.startsWith("[") ? st : null }; node.children.set(f, c); }
      c.value += w;
      node = c;
    }
  }
  return root;
};

K.renderFlame = function () {
  const box = K.$("#flame");
  if (!box) return;
  const controls = K.$("#flame-controls");
  if (controls) controls.replaceWith(K.flameControls());
  let root = K.flameTree(K.prof.data, K.prof.flameMode);
  for (const name of K.prof.zoom) { const c = root.children.get(name); if (!c) break; root = c; }
  if (!root.value) { box.replaceChildren(K.el("p", { class: "muted" }, "No stacks for this selection.")); return; }
  const ROW = 19;
  const cells = [];
  let depth = 0;
  const hue = (s) => { let h = 0; for (const ch of s) h = (h * 31 + ch.charCodeAt(0)) >>> 0; return h; };
  const walk = (n, x0, d, path) => {
    depth = Math.max(depth, d + 1);
    const w = n.value / root.value;
    const h = hue(n.name);
    const color = n.state ? getComputedStyle(document.documentElement).getPropertyValue("--" + n.state).trim() : `hsl(${20 + (h % 35)}, ${70 + (h % 20)}%, ${62 + (h % 14)}%)`;
    cells.push(K.el("div", {
      style: `left:${(x0 * 100).toFixed(3)}%;width:calc(${(w * 100).toFixed(3)}% - 1px);top:${d * ROW}px;background:${color}`,
      title: `${n.name}\n${K.ns(n.value)} (${K.pct(n.value / root.value)})`, "data-frame": n.name,
      onclick: () => { if (d > 0) { K.prof.zoom = K.prof.zoom.concat(path); K.renderFlame(); } },
    }, w > 0.02 ? n.name : ""));
    let x = x0;
    for (const c of [...n.children.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      walk(c, x, d + 1, path.concat([c.name]));
      x += c.value / root.value;
    }
  };
  walk(root, 0, 0, []);
  box.className = "flame";
  box.style.height = depth * ROW + 2 + "px";
  box.setAttribute("role", "img");
  box.setAttribute("aria-label", "Flame graph");
  box.replaceChildren(...cells);
};
