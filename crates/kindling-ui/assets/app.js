// Routing (#/map, #/requests?..., #/profiles, #/profile/{id}, #/trace/{id}),
// the time window and live refresh.
"use strict";

K.window = () => K.$("#window").value;
K.windowLabel = () => K.$("#window").selectedOptions[0].textContent;

K.app = { view: "map", live: true, timer: null, busy: false, lastOk: 0 };

const REFRESH_MS = 3000;

K.route = function () {
  const h = location.hash.replace(/^#\/?/, "");
  const [path, query] = h.split("?");
  const [view, ...rest] = (path || "map").split("/");
  const arg = decodeURIComponent(rest.join("/"));
  let show = "map";
  if (view === "requests") { show = "requests"; K.openRequests(query || ""); }
  else if (view === "profiles") show = "profiles";
  else if (view === "profile" || view === "trace") { show = "profile"; K.openProfile(view, arg); }
  K.app.view = show;
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== "view-" + show;
  for (const a of document.querySelectorAll(".top nav a")) {
    const on = a.dataset.view === show || (show === "profile" && a.dataset.view === "profiles");
    a.classList.toggle("active", on);
    if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (show !== "profile") K.refresh();
};

/** Refreshes the current view (not a trace-profile: it does not change). */
K.refresh = async function () {
  if (K.app.busy) return;
  K.app.busy = true;
  try {
    if (K.app.view === "map") await K.refreshMap();
    else if (K.app.view === "requests") {
      // The map's node names label the edges.
      if (!K.map.topo) await K.refreshMapData();
      await K.refreshRequests();
    } else if (K.app.view === "profiles") await K.refreshProfiles();
    K.app.lastOk = Date.now();
    K.banner(null);
  } catch (e) {
    K.banner("Could not refresh: " + e.message);
  } finally {
    K.app.busy = false;
    K.showUpdated();
  }
};

K.refreshMapData = async function () {
  const topo = await K.api("/api/v1/ui/map", { window: K.window() });
  K.map.topo = topo;
  K.map.nodes = new Map(topo.nodes.map((n) => [n.id, n]));
};

K.showUpdated = function () {
  const u = K.$("#updated");
  if (!K.app.lastOk) { u.textContent = ""; return; }
  const s = Math.round((Date.now() - K.app.lastOk) / 1000);
  u.textContent = K.app.live ? (s < 2 ? "updated just now" : "updated " + s + " s ago") : "paused";
};

K.setLive = function (on) {
  K.app.live = on;
  const b = K.$("#live");
  b.classList.toggle("on", on);
  b.setAttribute("aria-pressed", String(on));
  b.textContent = on ? "● Live" : "❚❚ Paused";
  clearInterval(K.app.timer);
  if (on) K.app.timer = setInterval(() => { if (K.app.view !== "profile" && !document.hidden) K.refresh(); else K.showUpdated(); }, REFRESH_MS);
  K.showUpdated();
};

window.addEventListener("DOMContentLoaded", () => {
  K.initRequests();
  const w = new URLSearchParams(location.search).get("window");
  if (w && [...K.$("#window").options].some((o) => o.value === w)) K.$("#window").value = w;
  K.$("#window").addEventListener("change", () => K.refresh());
  K.$("#live").addEventListener("click", () => K.setLive(!K.app.live));
  window.addEventListener("hashchange", K.route);
  K.setLive(true);
  K.route();
});
