"""Browser tests of Kindling's web UI, with Debian's headless chromium.

The demo's services (demo/run.sh: load generator -> frontend -> backend ->
Redis and PostgreSQL) run with real traffic while `kindling run` watches
them; the tests open the UI like a person would and check what it shows:
the service map's nodes and edges, the requests of a clicked edge, a
request's breakdown, the request explorer's filters, live updates, the
trace-profile view (fed a fixture: the profiles come with issue 6), and
that the store keeps it all across a `kill -9` of the agent.

Screenshots go to $KINDLING_ARTIFACTS (default target/browser-artifacts).
Run as root (the agent loads eBPF programs): they fail, never skip, otherwise.
"""
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("KINDLING_BIN") or str(ROOT / "target" / "release" / "kindling")
ARTIFACTS = pathlib.Path(os.environ.get("KINDLING_ARTIFACTS") or ROOT / "target" / "browser-artifacts")
FIXTURE = json.loads((pathlib.Path(__file__).parent / "fixtures" / "profile.json").read_text())

LOADGEN = "process:python3 loadgen.py"
FRONTEND = "process:python3 frontend.py"
BACKEND = "process:python3 backend.py"
REDIS = "process:redis-server"
POSTGRES = "process:postgres"
EDGES = [(LOADGEN, FRONTEND, "http"), (FRONTEND, BACKEND, "http"), (BACKEND, REDIS, "redis"), (BACKEND, POSTGRES, "postgresql")]
# The last one keeps chromium from looking up its autofill server (DNS queries
# that fail here and would show on the map as chromium's errors).
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-features=AutofillServerCommunication"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(port, path, timeout=10):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.load(r)


def wait_for(what, fn, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except (OSError, urllib.error.URLError, ValueError) as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


class Agent:
    """`kindling run` on a free port with its store in `data_dir`."""

    def __init__(self, data_dir, port=None):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.log = open(os.path.join(data_dir, f"agent-{self.port}.log"), "ab")
        self.proc = subprocess.Popen([BIN, "run", "--listen", f"127.0.0.1:{self.port}", "--data-dir", data_dir],
                                     stdout=self.log, stderr=self.log)
        wait_for("the agent's /healthz", self.healthy, 60)

    def healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"kindling run exited with {self.proc.returncode}: "
                                 + open(self.log.name, errors="replace").read()[-2000:])
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
            return r.status == 200

    def json(self, path):
        return http_json(self.port, path)

    def url(self, frag=""):
        return f"http://127.0.0.1:{self.port}/{frag}"

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def env():
    assert os.geteuid() == 0, "the browser tests run `kindling run`, which loads eBPF programs: run them as root"
    assert os.path.exists(BIN), f"no agent binary at {BIN} (make build, or set KINDLING_BIN)"
    assert os.path.exists("/usr/bin/chromium"), "no /usr/bin/chromium (scripts/install-deps.sh test)"
    data = tempfile.mkdtemp(prefix="kindling-ui-test-")
    agent = Agent(data)
    state = {"agent": agent, "data": data}
    demo = subprocess.Popen([str(ROOT / "demo" / "run.sh")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, DEMO_AGENT="0", DEMO_RATE="20"), text=True, start_new_session=True)
    out = []
    try:
        for line in demo.stdout:
            out.append(line)
            if line.startswith("demo: ready"):
                break
        else:
            raise AssertionError("demo/run.sh did not start:\n" + "".join(out))
        state["ports"] = dict(kv.split("=") for kv in re.search(r"demo: (frontend=.*)", "".join(out)).group(1).split())

        def map_ready():
            t = agent.json("/api/v1/ui/map?window=1m")
            have = {(e["src"], e["dst"], e["protocol"]) for e in t["edges"] if e["requests"] > 0}
            return all(e in have for e in EDGES) and t
        wait_for("the demo's edges on the service map", map_ready, 90)
        yield state
    finally:
        # run.sh stops its services on SIGTERM; anything left of its group is killed.
        demo.send_signal(signal.SIGTERM)
        try:
            demo.wait(90)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(demo.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        demo.wait()
        state["agent"].stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A 1280x800 page that records console errors; the test fails on any."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = ctx.new_page()
    errors = []
    pg.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    # Fetches cut short by a navigation are aborted by the browser, not failures.
    pg.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} {r.failure}")
          if "ERR_ABORTED" not in (r.failure or "") else None)
    yield pg
    ctx.close()
    assert not errors, "errors in the browser console:\n" + "\n".join(errors)


def edge_selector(src, dst, protocol):
    return f'g.edge[data-edge^="{src}|{dst}|{protocol}|"]'


def click_edge(page, src, dst, protocol):
    """Clicks an edge where a person would: on its label, else on the middle of its line."""
    expect(page.locator(edge_selector(src, dst, protocol))).to_have_count(1, timeout=15000)
    label = page.locator(f'text.edge-label[data-edge^="{src}|{dst}|{protocol}|"]')
    if label.count():
        label.click()
        return
    page.locator(edge_selector(src, dst, protocol)).scroll_into_view_if_needed()
    x, y = page.locator(edge_selector(src, dst, protocol) + " path.line").evaluate(
        """p => { const m = p.getScreenCTM(), q = p.getPointAtLength(p.getTotalLength() / 2);
               const r = new DOMPoint(q.x, q.y).matrixTransform(m); return [r.x, r.y]; }""")
    page.mouse.click(x, y)


def test_service_map_shows_the_services_and_their_calls(env, page):
    agent = env["agent"]
    page.goto(agent.url())
    expect(page).to_have_title(re.compile("Kindling"))
    for src, dst, proto in EDGES:
        expect(page.locator(edge_selector(src, dst, proto))).to_have_count(1, timeout=15000)
    # The same map as text: the lists and the accessible labels.
    edge_list = page.locator("#edge-list")
    for src, dst, proto in EDGES:
        text = f"{src.split(':', 1)[1]} → {dst.split(':', 1)[1]}"
        expect(edge_list.locator("li", has_text=text).filter(has_text=proto)).not_to_have_count(0)
    for node in [LOADGEN, FRONTEND, BACKEND, REDIS, POSTGRES]:
        expect(page.locator(f'#node-list li[data-node="{node}"]')).to_have_count(1)
        expect(page.locator(f'g.node[data-node="{node}"]')).to_have_attribute("aria-label", re.compile("^Node "))
    label = page.locator(edge_selector(FRONTEND, BACKEND, "http")).get_attribute("aria-label")
    assert re.search(r"/s · p99 [\d.]+ (ms|µs|s) · [\d.]+% errors", label), label
    # Fits the page's width at 1280x800 and the text is readable.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"the page scrolls sideways ({width}px)"
    size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#edge-list li')).fontSize)")
    assert size >= 12, size
    shot(page, "01-service-map")


def test_clicking_an_edge_lists_its_requests_and_a_request_shows_its_breakdown(env, page):
    agent = env["agent"]
    page.goto(agent.url("#/map"))
    click_edge(page, FRONTEND, BACKEND, "http")
    detail = page.locator("#detail")
    expect(detail.locator("h2")).to_contain_text("python3 frontend.py → python3 backend.py")
    expect(detail.locator(".chart svg")).to_have_count(3)
    rows = page.locator("#slowest-table tbody tr")
    expect(rows.first).to_be_visible(timeout=15000)
    texts = rows.all_inner_texts()
    assert all("/orders/{id}" in t or "/payments/{id}" in t for t in texts), texts
    # The slowest calls are the cache misses (ids that are multiples of 8).
    assert "/orders/{id}" in texts[0], texts
    shot(page, "02-edge-details")
    rows.first.click()
    expect(page.locator("#view-requests")).to_be_visible()
    box = page.locator("#req-detail")
    expect(box.locator(".waterfall")).to_be_visible()
    labels = box.locator(".wf-row > span:first-child").all_inner_texts()
    assert labels in (["Connect", "Request sent", "Waiting (TTFB)", "Content download"],
                      ["Reading request", "Processing", "Writing response"]), labels
    # The waiting (or processing) bar carries the time of a slow call.
    wait_bar = box.locator(".wf-wait")
    width = wait_bar.evaluate("e => e.getBoundingClientRect().width / e.parentElement.getBoundingClientRect().width")
    assert width > 0.5, width
    expect(box).to_contain_text("python3 frontend.py → python3 backend.py")
    expect(page.locator("#edge-filter")).to_contain_text("python3 backend.py")
    shot(page, "03-request-breakdown")


def test_request_explorer_filters_and_reveals_the_slow_query(env, page):
    agent = env["agent"]
    # The backend's calls to PostgreSQL, slowest first (the demo's setup by psql is not on this edge).
    page.goto(agent.url("#/requests?" + urllib.parse.urlencode({"protocol": "postgresql", "src": BACKEND, "sort": "slowest"})))
    rows = page.locator("#req-table tbody tr")
    expect(rows.first).to_be_visible(timeout=15000)
    expect(rows.filter(has_not_text="postgresql")).to_have_count(0)
    expect(page.locator("#edge-filter")).to_contain_text("python3 backend.py → any")
    # The slowest PostgreSQL calls are the unindexed scan that makes some orders slow.
    expect(rows.first).to_contain_text("customer_id")
    page.locator("#req-filters input[name=slow]").check()
    expect(page).to_have_url(re.compile("slow=true"))
    expect(rows.first).to_be_visible()
    expect(rows.filter(has_not_text="slow")).to_have_count(0)
    shot(page, "04-slow-sql")
    # By trace id: the frontend's call to the backend, seen from both ends.
    recs = agent.json("/api/v1/ui/requests?protocol=http&src=" + urllib.parse.quote(FRONTEND) + "&limit=20")
    trace = next(r["trace_id"] for r in recs if r["trace_id"])
    page.goto(agent.url("#/requests"))
    page.locator("#req-filters input[name=trace_id]").fill(trace)
    page.locator("#req-filters input[name=trace_id]").press("Enter")
    expect(page).to_have_url(re.compile("trace_id=" + trace))
    expect(rows).to_have_count(2, timeout=10000)
    sides = sorted(t.split("\t")[2].strip() for t in rows.all_inner_texts())
    assert sides == ["client", "server"], sides
    # Errors only.
    page.goto(agent.url("#/requests?error=true&protocol=http"))
    expect(rows.first).to_be_visible(timeout=60000)
    expect(rows.filter(has_not_text="error")).to_have_count(0)
    expect(rows.first).to_contain_text(re.compile("50[23]"))


def test_the_ui_updates_live(env, page):
    agent = env["agent"]
    page.goto(agent.url("#/requests"))
    rows = page.locator("#req-table tbody tr")
    expect(rows.first).to_be_visible(timeout=15000)
    first = rows.first.get_attribute("data-id")
    # New requests appear without a reload.
    expect(rows.first).not_to_have_attribute("data-id", first, timeout=15000)
    expect(page.locator("#updated")).to_contain_text("updated")
    page.goto(agent.url("#/map"))
    rps = lambda: page.locator(edge_selector(LOADGEN, FRONTEND, "http")).get_attribute("aria-label")
    before = rps()
    wait_for("the map to change", lambda: rps() != before, 20)


def route_profiles(page):
    """Serves the trace-profile fixture for /api/v1/profiles (issue 6 fills the store)."""
    def handle(route):
        url = route.request.url
        path = url.split("?")[0]
        if path.endswith("/api/v1/profiles"):
            body = [{k: FIXTURE[k] for k in ("id", "trace_id", "kept_because")}
                    | {"endpoint": FIXTURE["request"]["endpoint"], "duration_ns": FIXTURE["request"]["duration_ns"],
                       "start_ts_ns": FIXTURE["request"]["start_ts_ns"]}]
            return route.fulfill(status=200, content_type="application/json", body=json.dumps(body))
        if path.endswith("/api/v1/profiles/" + FIXTURE["id"]):
            return route.fulfill(status=200, content_type="application/json", body=json.dumps(FIXTURE))
        return route.continue_()
    page.route(re.compile(r".*/api/v1/profiles.*"), handle)


def test_trace_profile_view_from_a_fixture(env, page):
    agent = env["agent"]
    route_profiles(page)
    page.goto(agent.url("#/profiles"))
    table = page.locator("#profiles-table tbody tr")
    expect(table).to_have_count(1)
    expect(table.first).to_contain_text("/orders/{id}")
    # Linkable by trace id.
    page.goto(agent.url("#/trace/" + FIXTURE["trace_id"]))
    expect(page.locator("#verdict .summary")).to_have_text(FIXTURE["verdict"]["summary"])
    expect(page.locator("#verdict .verdict-bar > div")).to_have_count(5)
    slices = page.locator(".lanes rect.slice")
    n = sum(len(t["slices"]) for t in FIXTURE["threads"])
    expect(slices).to_have_count(n)
    expect(page.locator(".lanes rect.down")).to_have_count(2)
    expect(page.locator('.lanes rect.slice[data-state="lock"]')).to_have_count(1)
    # Click the long network wait: its stack and the slow query it waited for.
    page.locator('.lanes rect.slice[data-state="net"]').nth(1).click()
    box = page.locator("#slice-detail")
    expect(box.locator("#slice-stack")).to_contain_text("psycopg2._psycopg.cursor.execute")
    expect(box).to_contain_text("127.0.0.1:5432")
    expect(box).to_contain_text("WHERE customer_id = ?")
    # The flame graph: outermost frame first, the wait's state as the leaf.
    flame = page.locator("#flame div")
    expect(flame.filter(has_text="threading:run").first).to_be_visible()
    frames = flame.evaluate_all("els => els.map(e => e.dataset.frame)")
    assert "[network / downstream: 127.0.0.1:5432]" in frames, frames
    shot(page, "05-trace-profile")
    # Zoom into a frame, then back.
    flame.filter(has_text="backend.py:do_GET").first.click()
    expect(page.locator("#flame div").first).to_have_attribute("data-frame", "backend.py:do_GET")
    page.get_by_role("button", name="Reset zoom").click()
    expect(page.locator("#flame div").first).to_have_attribute("data-frame", "all")
    page.get_by_role("button", name="On-CPU", exact=True).click()
    frames = page.locator("#flame div").evaluate_all("els => els.map(e => e.dataset.frame)")
    assert "json.dumps" in frames and not any(f.startswith("[") for f in frames), frames


def test_a_restart_after_kill_9_shows_the_stored_history(env, page):
    agent = env["agent"]
    def stored_edges(a):
        hist = a.json("/api/v1/ui/map?window=1h")
        assert hist["source"] == "store"
        have = {(e["src"], e["dst"], e["protocol"]) for e in hist["edges"]}
        return all(e in have for e in EDGES)
    # A minute is rolled up 15 s after it ends: wait for one with the demo's traffic.
    wait_for("the demo's edges in the stored rollups", lambda: stored_edges(agent), 150)
    before = agent.json("/api/v1/ui/requests?limit=1000")
    assert before, "requests are stored"
    killed_at = time.time_ns()
    agent.stop(signal.SIGKILL)
    restarted = Agent(env["data"], port=agent.port)
    env["agent"] = restarted
    status = restarted.json("/api/v1/ui/status")["store"]
    assert status["edge_minutes"] > 0 and status["requests"] > 0, status
    # Every request stored before the kill is still there.
    after = restarted.json(f"/api/v1/ui/requests?limit=1000&until={killed_at}")
    ids = {r["id"] for r in after}
    oldest = min(r["end_ts_ns"] for r in after)
    lost = [r["id"] for r in before if r["end_ts_ns"] >= oldest and r["id"] not in ids]
    assert not lost, f"stored requests lost by the kill: {lost[:10]}"
    assert stored_edges(restarted), restarted.json("/api/v1/ui/map?window=1h")
    # The UI shows the history through the 1-hour window.
    page.goto(restarted.url("?window=1h#/map"))
    expect(page.locator("#window")).to_have_value("1h")
    expect(page.locator(edge_selector(BACKEND, POSTGRES, "postgresql"))).to_have_count(1, timeout=15000)
    page.locator(f'#node-list li[data-node="{BACKEND}"]').click()
    expect(page.locator("#detail")).to_contain_text("stored, 1 min steps")
    expect(page.locator("#detail .chart svg")).to_have_count(3)
    shot(page, "06-history-after-restart")
