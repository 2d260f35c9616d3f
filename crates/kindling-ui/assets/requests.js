// The request explorer: stored requests filtered by protocol, endpoint,
// slow/error, trace id and edge; a click shows the network breakdown.
"use strict";

K.req = { params: new URLSearchParams(), rows: [], selectedId: null };

const FILTERS = ["protocol", "side", "endpoint", "trace_id", "slow", "error", "sort"];
const SCOPE = ["src", "dst", "node"];

/** Shows the filters of the hash's query in the form. */
K.syncForm = function () {
  const f = K.$("#req-filters");
  const p = K.req.params;
  for (const k of FILTERS) {
    const input = f.elements[k];
    if (input.type === "checkbox") input.checked = p.get(k) === "true";
    else input.value = p.get(k) || (k === "sort" ? "recent" : "");
  }
  const chip = K.$("#edge-filter");
  const scope = SCOPE.filter((k) => p.get(k));
  if (scope.length) {
    const nodes = K.map.nodes;
    const txt = p.get("node") ? "node " + K.nodeName(p.get("node"), nodes)
      : [p.get("src") ? K.nodeName(p.get("src"), nodes) : "any", p.get("dst") ? K.nodeName(p.get("dst"), nodes) : "any"].join(" → ");
    chip.replaceChildren("Edge: " + txt + " ", K.el("button", { type: "button", title: "Remove", "aria-label": "Remove the edge filter", onclick: () => {
      for (const k of SCOPE) K.req.params.delete(k);
      K.req.params.delete("id");
      K.setRequestHash();
    } }, "×"));
    chip.hidden = false;
  } else {
    chip.hidden = true;
  }
};

K.setRequestHash = function () {
  const qs = K.req.params.toString();
  const h = "#/requests" + (qs ? "?" + qs : "");
  if (location.hash !== h) location.hash = h;
  else K.refreshRequests();
};

K.initRequests = function () {
  const f = K.$("#req-filters");
  const apply = () => {
    const p = K.req.params;
    for (const k of FILTERS) {
      const input = f.elements[k];
      const v = input.type === "checkbox" ? (input.checked ? "true" : "") : input.value.trim();
      if (v && !(k === "sort" && v === "recent")) p.set(k, v); else p.delete(k);
    }
    p.delete("id");
    K.req.selectedId = null;
    K.setRequestHash();
  };
  f.addEventListener("change", apply);
  f.addEventListener("submit", (ev) => { ev.preventDefault(); apply(); });
  let typing;
  f.addEventListener("input", (ev) => {
    if (ev.target.type !== "search") return;
    clearTimeout(typing);
    typing = setTimeout(apply, 400);
  });
};

/** Called when the hash changes to #/requests?... */
K.openRequests = function (query) {
  const next = new URLSearchParams(query);
  const same = (p) => { const c = new URLSearchParams(p); c.delete("id"); return c.toString(); };
  // Other filters: the rows shown so far no longer apply.
  if (same(next) !== same(K.req.params)) { K.$("#req-table tbody").replaceChildren(); K.req.rows = []; }
  K.req.params = next;
  K.req.selectedId = K.req.params.get("id");
  K.syncForm();
};

K.refreshRequests = async function () {
  const p = K.req.params;
  const q = { window: K.window(), limit: 200 };
  for (const k of FILTERS.concat(SCOPE)) if (p.get(k)) q[k] = p.get(k);
  if (q.sort === "recent") delete q.sort;
  // A trace id is searched over everything kept, not only the window.
  if (q.trace_id) delete q.window;
  const rows = await K.api("/api/v1/ui/requests", q);
  K.req.rows = rows;
  const nodes = K.map.nodes;
  const tbody = K.$("#req-table tbody");
  tbody.replaceChildren(...rows.map((r) => K.el("tr", {
    class: String(r.id) === String(K.req.selectedId) ? "selected" : "", "data-id": r.id,
    onclick: () => { K.req.selectedId = r.id; K.req.params.set("id", r.id); history.replaceState(null, "", "#/requests?" + K.req.params); K.renderRequestRows(); K.showRequest(); },
  },
    K.el("td", { class: "small" }, K.time(r.end_ts_ns)),
    K.el("td", {}, r.protocol),
    K.el("td", { class: "small" }, r.side),
    K.el("td", { class: "ep" }, K.reqName(r)),
    K.el("td", {}, String(r.status), r.is_error ? K.el("span", { class: "badge err" }, " error") : null, r.is_slow ? K.el("span", { class: "badge slow" }, " slow") : null),
    K.el("td", { class: "num" }, K.ns(r.duration_ns)),
    K.el("td", { class: "small" }, K.nodeName(r.src_node, nodes) + " → " + K.nodeName(r.dst_node, nodes)))));
  K.$("#req-empty").hidden = rows.length > 0;
  await K.showRequest();
};

K.renderRequestRows = function () {
  for (const tr of document.querySelectorAll("#req-table tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.id === String(K.req.selectedId));
  }
};

K.showRequest = async function () {
  const box = K.$("#req-detail");
  const id = K.req.selectedId;
  if (!id) {
    box.replaceChildren(K.el("h2", {}, "Requests"), K.el("p", { class: "muted" },
      "Stored requests: every slow or failed one and a sample of the rest. Click one for its network breakdown."));
    return;
  }
  let r = K.req.rows.find((x) => String(x.id) === String(id));
  try {
    if (!r) r = await K.api("/api/v1/ui/requests/" + encodeURIComponent(id));
  } catch (e) {
    box.replaceChildren(K.el("p", { class: "muted" }, e.message));
    return;
  }
  const parts = [K.requestDetail(r, K.map.nodes)];
  if (r.trace_id) {
    try {
      const profs = await K.api("/api/v1/profiles", { trace_id: r.trace_id, limit: 5 });
      if (profs.length) parts.push(K.el("p", {}, K.el("a", { href: "#/profile/" + encodeURIComponent(profs[0].id) }, "Open its trace-profile →")));
    } catch (e) { /* the list is optional here */ }
  }
  if (String(K.req.selectedId) === String(id)) box.replaceChildren(...parts);
};
