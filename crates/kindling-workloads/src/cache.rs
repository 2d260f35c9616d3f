//! The bounded cache of process facts and workloads, fed by the event stream.
//!
//! Naming a request's process must cost one map lookup, so facts are learnt
//! as processes appear (snapshot, fork, exec) and the workload is computed
//! once per change, then shared (`Arc`) with every record that asks.
//!
//! Replay gives the same answers as the stream it replays: all state changes
//! come from events, eviction follows insertion order (never a hash map's
//! order), and the exit grace runs on event time. Only a live
//! [`ProcessLookup`] adds what the stream lacks (the cgroup at exec, processes
//! never seen).

use crate::{identify, Workload};
use kindling_events::model::{Event, EventBody, ExecEvent, ProcessInfo};
use kindling_events::wire::exec::ARGS_CAP;
use kindling_procfs::ProcFs;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// What naming needs to know about a process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessFacts {
    pub exe: String,
    pub cmdline: Vec<String>,
    /// The cgroup v2 path, or the v1 lines joined with `;`.
    pub cgroup: String,
    pub comm: String,
}

impl ProcessFacts {
    pub fn from_info(comm: impl Into<String>, info: &ProcessInfo) -> ProcessFacts {
        ProcessFacts {
            exe: info.exe.clone(),
            cmdline: info.cmdline.clone(),
            cgroup: info.cgroup.clone(),
            comm: comm.into(),
        }
    }

    pub fn workload(&self) -> Workload {
        identify(&self.cgroup, &self.exe, &self.cmdline, &self.comm)
    }
}

/// Where facts about a process the stream did not describe come from.
pub trait ProcessLookup {
    fn lookup(&self, pid: u32) -> Option<ProcessFacts>;

    /// Only the cgroup (what an exec event lacks).
    fn cgroup(&self, pid: u32) -> Option<String> {
        self.lookup(pid).map(|f| f.cgroup)
    }
}

/// The live /proc.
#[derive(Clone, Debug, Default)]
pub struct ProcFsLookup {
    procfs: ProcFs,
}

impl ProcFsLookup {
    /// A lookup in another /proc root (tests, a host /proc mounted elsewhere).
    pub fn new(procfs: ProcFs) -> ProcFsLookup {
        ProcFsLookup { procfs }
    }
}

impl ProcessLookup for ProcFsLookup {
    fn lookup(&self, pid: u32) -> Option<ProcessFacts> {
        let (comm, info) = self.procfs.process_info(pid)?;
        Some(ProcessFacts::from_info(comm, &info))
    }

    fn cgroup(&self, pid: u32) -> Option<String> {
        Some(self.procfs.cgroup(pid)).filter(|c| !c.is_empty())
    }
}

/// No live lookup: for replay, where /proc is not the recorded machine's.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLookup;

impl ProcessLookup for NoLookup {
    fn lookup(&self, _pid: u32) -> Option<ProcessFacts> {
        None
    }
}

/// Counters for self-telemetry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkloadStats {
    /// Lookups asked of the [`ProcessLookup`], and those that found nothing.
    pub lookups: u64,
    pub lookup_misses: u64,
    /// Entries dropped for room while their process may still run.
    pub evicted: u64,
    /// Entries dropped after their process exited.
    pub forgotten: u64,
}

struct Entry {
    /// Shared between a parent and the children it forked until they exec.
    facts: Arc<ProcessFacts>,
    workload: Arc<Workload>,
    /// Bumped on every write, so a delayed forget or a stale eviction record
    /// cannot remove a newer process that reused the pid.
    gen: u64,
}

/// pid -> process facts and workload, bounded.
pub struct Workloads {
    entries: HashMap<u32, Entry>,
    /// (pid, gen) in write order: the oldest goes first when full.
    order: VecDeque<(u32, u64)>,
    /// (event time of exit, pid, gen): forgotten once the grace has passed.
    exited: VecDeque<(u64, u32, u64)>,
    capacity: usize,
    grace_ns: u64,
    /// The latest event time seen (events from different CPUs may arrive
    /// slightly out of order; time never goes back here).
    now_ns: u64,
    next_gen: u64,
    lookup: Box<dyn ProcessLookup + Send>,
    stats: WorkloadStats,
}

impl Workloads {
    /// A capacity for a busy host: processes, not threads.
    pub const DEFAULT_CAPACITY: usize = 1 << 16;
    /// How long an exited process stays named: its last requests and socket
    /// events are still in the pipeline when its exit is observed.
    pub const DEFAULT_GRACE_NS: u64 = 5_000_000_000;

    pub fn new(capacity: usize, lookup: Box<dyn ProcessLookup + Send>) -> Workloads {
        Workloads {
            entries: HashMap::new(),
            order: VecDeque::new(),
            exited: VecDeque::new(),
            capacity: capacity.max(1),
            grace_ns: Self::DEFAULT_GRACE_NS,
            now_ns: 0,
            next_gen: 0,
            lookup,
            stats: WorkloadStats::default(),
        }
    }

    /// Sets how long (in event time) an exited process stays named.
    pub fn with_grace_ns(mut self, grace_ns: u64) -> Workloads {
        self.grace_ns = grace_ns;
        self
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn stats(&self) -> WorkloadStats {
        self.stats
    }

    /// Learns from one event. Feed every event (not only process ones): their
    /// timestamps drive the exit grace.
    pub fn observe(&mut self, ev: &Event) {
        self.now_ns = self.now_ns.max(ev.ts_ns);
        match &ev.body {
            EventBody::ProcessSnapshot(info) => {
                self.insert(ev.pid, ProcessFacts::from_info(ev.comm.to_string_lossy(), info));
            }
            EventBody::Exec(exec) => self.on_exec(ev.pid, ev.comm.to_string_lossy(), exec),
            EventBody::Fork(fork) => self.on_fork(ev.pid, fork.child_pid),
            // Runtimes name their threads (JVM, Go, Node workers): only the
            // main thread's name is the process's.
            EventBody::Rename(r) if ev.tid == ev.pid => self.on_rename(ev.pid, r.new_comm.to_string_lossy()),
            EventBody::Exit(exit) if exit.group_dead => self.on_exit(ev.pid),
            _ => {}
        }
        self.forget_expired();
    }

    /// The workload of `pid`: cached, else from the lookup, else a process
    /// named `comm`. The answer is cached either way, so a process the lookup
    /// cannot see costs one failed lookup, not one per request.
    pub fn of(&mut self, pid: u32, comm: &str) -> Arc<Workload> {
        if let Some(e) = self.entries.get(&pid) {
            return e.workload.clone();
        }
        let facts = self
            .lookup_facts(pid)
            .unwrap_or_else(|| ProcessFacts { comm: comm.to_string(), ..ProcessFacts::default() });
        self.insert(pid, facts)
    }

    /// The cached workload, without a lookup.
    pub fn get(&self, pid: u32) -> Option<Arc<Workload>> {
        self.entries.get(&pid).map(|e| e.workload.clone())
    }

    /// The cached facts, without a lookup.
    pub fn facts(&self, pid: u32) -> Option<&ProcessFacts> {
        self.entries.get(&pid).map(|e| e.facts.as_ref())
    }

    fn on_exec(&mut self, pid: u32, comm: String, exec: &ExecEvent) {
        // Read the cgroup now: systemd and container runtimes move the child
        // into the service's or container's cgroup between fork and exec, so
        // the one inherited at fork is stale. Without a live lookup (replay),
        // the inherited one is the best there is.
        let cgroup = self
            .live_cgroup(pid)
            .or_else(|| self.entries.get(&pid).map(|e| e.facts.cgroup.clone()))
            .unwrap_or_default();
        let cmdline = self.exec_cmdline(pid, &exec.args);
        self.insert(pid, ProcessFacts { exe: exec.filename.clone(), cmdline, cgroup, comm });
    }

    /// The probe copies at most `ARGS_CAP` bytes of argv, so the last
    /// argument of a long command line (a JVM's classpath fills it easily) may
    /// be cut. Then the live command line is used if it is still this one's,
    /// else the cut argument is dropped rather than taken for a name.
    fn exec_cmdline(&mut self, pid: u32, args: &[String]) -> Vec<String> {
        let copied: usize = args.iter().map(|a| a.len() + 1).sum();
        if copied < ARGS_CAP {
            return args.to_vec();
        }
        if let Some(live) = self.lookup_facts(pid) {
            if live.cmdline.first() == args.first() {
                return live.cmdline;
            }
        }
        args.split_last().map(|(_, whole)| whole.to_vec()).unwrap_or_default()
    }

    fn on_fork(&mut self, parent: u32, child: u32) {
        if parent == child {
            return;
        }
        // An unknown parent leaves the child unknown: `of` looks it up.
        let Some(e) = self.entries.get(&parent) else { return };
        let (facts, workload) = (e.facts.clone(), e.workload.clone());
        self.put(child, facts, workload);
    }

    fn on_rename(&mut self, pid: u32, comm: String) {
        let Some(e) = self.entries.get(&pid) else { return };
        if e.facts.comm == comm {
            return;
        }
        let facts = ProcessFacts { comm, ..(*e.facts).clone() };
        self.insert(pid, facts);
    }

    fn on_exit(&mut self, pid: u32) {
        if let Some(e) = self.entries.get(&pid) {
            self.exited.push_back((self.now_ns, pid, e.gen));
        }
    }

    fn forget_expired(&mut self) {
        while let Some(&(ts, pid, gen)) = self.exited.front() {
            if ts.saturating_add(self.grace_ns) > self.now_ns {
                break;
            }
            self.exited.pop_front();
            if self.remove_if(pid, gen) {
                self.stats.forgotten += 1;
            }
        }
    }

    fn live_cgroup(&mut self, pid: u32) -> Option<String> {
        self.stats.lookups += 1;
        let cgroup = self.lookup.cgroup(pid);
        if cgroup.is_none() {
            self.stats.lookup_misses += 1;
        }
        cgroup
    }

    fn lookup_facts(&mut self, pid: u32) -> Option<ProcessFacts> {
        self.stats.lookups += 1;
        let facts = self.lookup.lookup(pid);
        if facts.is_none() {
            self.stats.lookup_misses += 1;
        }
        facts
    }

    fn insert(&mut self, pid: u32, facts: ProcessFacts) -> Arc<Workload> {
        let workload = Arc::new(facts.workload());
        self.put(pid, Arc::new(facts), workload.clone());
        workload
    }

    fn put(&mut self, pid: u32, facts: Arc<ProcessFacts>, workload: Arc<Workload>) {
        if !self.entries.contains_key(&pid) {
            self.make_room();
        }
        let gen = self.next_gen;
        self.next_gen += 1;
        self.entries.insert(pid, Entry { facts, workload, gen });
        self.order.push_back((pid, gen));
        // Rewrites leave stale records behind; drop them now and then so the
        // queue stays proportional to the capacity.
        if self.order.len() > 2 * self.capacity + 64 {
            let entries = &self.entries;
            self.order.retain(|(pid, gen)| entries.get(pid).is_some_and(|e| e.gen == *gen));
        }
    }

    /// Frees one slot: exited processes first (whatever their grace), then
    /// the oldest written.
    fn make_room(&mut self) {
        while self.entries.len() >= self.capacity {
            if let Some((_, pid, gen)) = self.exited.pop_front() {
                if self.remove_if(pid, gen) {
                    self.stats.forgotten += 1;
                }
                continue;
            }
            let Some((pid, gen)) = self.order.pop_front() else { break };
            if self.remove_if(pid, gen) {
                self.stats.evicted += 1;
            }
        }
    }

    /// Removes `pid` if its entry is still the one written as `gen`.
    fn remove_if(&mut self, pid: u32, gen: u64) -> bool {
        let current = self.entries.get(&pid).is_some_and(|e| e.gen == gen);
        if current {
            self.entries.remove(&pid);
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkloadKind;
    use kindling_events::model::{Comm, ExitEvent, ForkEvent, RenameEvent};
    use std::sync::Mutex;

    const ID: &str = "3f4e2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    const SEC: u64 = 1_000_000_000;

    fn ev(ts_ns: u64, pid: u32, comm: &str, body: EventBody) -> Event {
        Event { ts_ns, pid, tid: pid, cpu: 0, comm: Comm::from(comm), body }
    }

    fn snapshot(ts: u64, pid: u32, comm: &str, exe: &str, cmdline: &str, cgroup: &str) -> Event {
        let info = ProcessInfo {
            ppid: 1,
            exe: exe.into(),
            cmdline: cmdline.split(' ').map(String::from).collect(),
            cgroup: cgroup.into(),
        };
        ev(ts, pid, comm, EventBody::ProcessSnapshot(info))
    }

    fn fork(ts: u64, parent: u32, comm: &str, child: u32) -> Event {
        ev(ts, parent, comm, EventBody::Fork(ForkEvent { child_pid: child }))
    }

    fn exec(ts: u64, pid: u32, comm: &str, filename: &str, args: &str) -> Event {
        let args = args.split(' ').map(String::from).collect();
        ev(ts, pid, comm, EventBody::Exec(ExecEvent { ppid: 1, filename: filename.into(), args }))
    }

    fn exit(ts: u64, pid: u32, group_dead: bool) -> Event {
        ev(ts, pid, "x", EventBody::Exit(ExitEvent { exit_code: 0, group_dead }))
    }

    fn name(w: &Workloads, pid: u32) -> Option<String> {
        w.get(pid).map(|w| w.name.clone())
    }

    /// A lookup backed by a shared table the test can change.
    #[derive(Clone, Default)]
    struct FakeProc(Arc<Mutex<HashMap<u32, ProcessFacts>>>);

    impl FakeProc {
        fn set(&self, pid: u32, exe: &str, cmdline: &str, cgroup: &str, comm: &str) {
            let facts = ProcessFacts {
                exe: exe.into(),
                cmdline: cmdline.split(' ').map(String::from).collect(),
                cgroup: cgroup.into(),
                comm: comm.into(),
            };
            self.0.lock().unwrap().insert(pid, facts);
        }
    }

    impl ProcessLookup for FakeProc {
        fn lookup(&self, pid: u32) -> Option<ProcessFacts> {
            self.0.lock().unwrap().get(&pid).cloned()
        }
    }

    #[test]
    fn snapshot_fork_exec_exit_without_lookup() {
        let mut w = Workloads::new(64, Box::new(NoLookup)).with_grace_ns(2 * SEC);
        let docker = format!("/system.slice/docker-{ID}.scope");
        w.observe(&snapshot(SEC, 100, "bash", "/usr/bin/bash", "bash /opt/start.sh", &docker));
        let start = w.of(100, "bash");
        assert_eq!(start.kind, WorkloadKind::Container);
        assert_eq!(start.name, "bash start.sh");
        assert_eq!(start.container_id, "3f4e2a1b9c8d");

        // The child is its parent's workload until it execs.
        w.observe(&fork(2 * SEC, 100, "bash", 101));
        assert!(Arc::ptr_eq(&w.of(101, "bash"), &start));

        // exec: the program changes, the cgroup (and so the container) stays.
        w.observe(&exec(3 * SEC, 101, "python3", "/usr/bin/python3", "python3 -u /app/orders_api.py"));
        let orders = w.of(101, "python3");
        assert_eq!(orders.kind, WorkloadKind::Container);
        assert_eq!(orders.name, "python3 orders_api.py");
        assert_eq!(orders.container_id, "3f4e2a1b9c8d");
        assert_eq!(name(&w, 100).as_deref(), Some("bash start.sh"));

        // A thread's exit forgets nothing; the process's is forgotten after
        // the grace, in event time.
        w.observe(&exit(4 * SEC, 101, false));
        w.observe(&exit(4 * SEC, 101, true));
        assert_eq!(name(&w, 101).as_deref(), Some("python3 orders_api.py"));
        w.observe(&exit(5 * SEC, 100, false)); // time passes
        assert!(w.get(101).is_some(), "within the grace");
        w.observe(&exit(6 * SEC, 100, false));
        assert!(w.get(101).is_none(), "forgotten after the grace");
        assert_eq!(w.stats().forgotten, 1);

        // Unknown now, and no lookup: named by the comm given.
        let gone = w.of(101, "python3");
        assert_eq!(*gone, Workload::process("python3"));
    }

    #[test]
    fn a_reused_pid_is_not_forgotten_with_the_old_process() {
        let mut w = Workloads::new(64, Box::new(NoLookup)).with_grace_ns(2 * SEC);
        w.observe(&snapshot(SEC, 1, "init", "/sbin/init", "/sbin/init", "/init.scope"));
        w.observe(&fork(SEC, 1, "init", 200));
        w.observe(&exec(SEC, 200, "old", "/usr/bin/old", "old"));
        w.observe(&exit(2 * SEC, 200, true));
        // Within the grace, pid 200 comes back as another process.
        w.observe(&fork(3 * SEC, 1, "init", 200));
        w.observe(&exec(3 * SEC, 200, "new", "/usr/bin/new", "new"));
        w.observe(&exit(10 * SEC, 1, false));
        assert_eq!(name(&w, 200).as_deref(), Some("new"));
    }

    #[test]
    fn renames_of_the_main_thread_only() {
        let mut w = Workloads::new(64, Box::new(NoLookup));
        // A process with neither exe nor argv is named by its comm.
        w.observe(&snapshot(SEC, 300, "worker", "", "", "/"));
        assert_eq!(name(&w, 300).as_deref(), Some("worker"));
        let mut thread_rename =
            ev(SEC, 300, "worker", EventBody::Rename(RenameEvent { new_comm: Comm::from("pool-1") }));
        thread_rename.tid = 301;
        w.observe(&thread_rename);
        assert_eq!(name(&w, 300).as_deref(), Some("worker"));
        w.observe(&ev(SEC, 300, "worker", EventBody::Rename(RenameEvent { new_comm: Comm::from("ingest") })));
        assert_eq!(name(&w, 300).as_deref(), Some("ingest"));
        assert_eq!(w.facts(300).map(|f| f.comm.as_str()), Some("ingest"));
    }

    #[test]
    fn exec_reads_the_cgroup_the_child_was_moved_to() {
        let procs = FakeProc::default();
        let mut w = Workloads::new(64, Box::new(procs.clone()));
        w.observe(&snapshot(SEC, 1, "systemd", "/usr/lib/systemd/systemd", "/sbin/init", "/init.scope"));
        w.observe(&fork(SEC, 1, "systemd", 400));
        assert_eq!(w.get(400).map(|w| w.kind), Some(WorkloadKind::Process));
        // systemd moved the child into the unit's cgroup before exec.
        procs.set(
            400,
            "/usr/bin/python3.11",
            "python3 /srv/orders_api.py",
            "/system.slice/orders.service",
            "python3",
        );
        w.observe(&exec(SEC, 400, "python3", "/usr/bin/python3", "python3 /srv/orders_api.py"));
        let got = w.of(400, "python3");
        assert_eq!(got.kind, WorkloadKind::SystemdService);
        assert_eq!(got.name, "orders");
        // The event's exe and argv are kept (the same spelling live and in replay).
        assert_eq!(w.facts(400).map(|f| f.exe.as_str()), Some("/usr/bin/python3"));
    }

    #[test]
    fn exec_without_lookup_keeps_the_inherited_cgroup() {
        let mut w = Workloads::new(64, Box::new(NoLookup));
        w.observe(&snapshot(SEC, 10, "sh", "/usr/bin/dash", "sh", "/system.slice/cron.service"));
        w.observe(&fork(SEC, 10, "sh", 11));
        w.observe(&exec(SEC, 11, "backup", "/usr/local/bin/backup", "backup --all"));
        assert_eq!(w.facts(11).map(|f| f.cgroup.as_str()), Some("/system.slice/cron.service"));
        assert_eq!(name(&w, 11).as_deref(), Some("cron"));
        // An exec of a pid never seen before: no cgroup at all.
        w.observe(&exec(SEC, 12, "srv", "/usr/bin/srv", "srv"));
        assert_eq!(*w.of(12, "srv"), Workload::process("srv"));
    }

    #[test]
    fn truncated_exec_args() {
        // A JVM whose classpath fills the probe's argv copy.
        let classpath = "/opt/lib/a.jar:".repeat(40);
        let cut = format!("java -Xmx1g -cp {}", &classpath[..ARGS_CAP - 17]);
        assert!(cut.len() + 1 >= ARGS_CAP);
        let mut w = Workloads::new(64, Box::new(NoLookup));
        w.observe(&exec(SEC, 500, "java", "/usr/bin/java", &cut));
        // Not "java /opt/lib/a.jar:..." nor a cut class name: just java.
        assert_eq!(name(&w, 500).as_deref(), Some("java"));

        // Live, the whole command line is read back from /proc.
        let procs = FakeProc::default();
        let full = format!("java -Xmx1g -cp {classpath} com.example.OrdersApp");
        procs.set(501, "/usr/lib/jvm/17/bin/java", &full, "/", "java");
        let mut w = Workloads::new(64, Box::new(procs));
        w.observe(&exec(SEC, 501, "java", "/usr/bin/java", &cut));
        assert_eq!(name(&w, 501).as_deref(), Some("java com.example.OrdersApp"));
    }

    #[test]
    fn of_looks_up_once_and_caches_misses() {
        let procs = FakeProc::default();
        procs.set(600, "/usr/bin/node", "node /srv/api/server.js", "/", "node");
        let mut w = Workloads::new(64, Box::new(procs));
        assert_eq!(w.of(600, "node").name, "node server.js");
        assert_eq!(w.of(600, "node").name, "node server.js");
        assert_eq!(*w.of(601, "mystery"), Workload::process("mystery"));
        assert_eq!(*w.of(601, "mystery"), Workload::process("mystery"));
        assert_eq!(w.stats().lookups, 2);
        assert_eq!(w.stats().lookup_misses, 1);
    }

    #[test]
    fn bounded_with_the_oldest_evicted_first() {
        let mut w = Workloads::new(3, Box::new(NoLookup));
        for pid in 1..=3 {
            w.observe(&exec(SEC, pid, "p", &format!("/bin/p{pid}"), &format!("p{pid}")));
        }
        // Rewriting pid 1 makes it the newest.
        w.observe(&exec(SEC, 1, "p", "/bin/p1b", "p1b"));
        w.observe(&exec(SEC, 4, "p", "/bin/p4", "p4"));
        assert_eq!(w.len(), 3);
        assert!(w.get(2).is_none());
        assert_eq!(name(&w, 1).as_deref(), Some("p1b"));
        assert_eq!(w.stats().evicted, 1);
        // Exited processes make room first, whatever their grace.
        w.observe(&exit(SEC, 4, true));
        w.observe(&exec(SEC, 5, "p", "/bin/p5", "p5"));
        assert!(w.get(4).is_none());
        assert!(w.get(3).is_some());
        assert_eq!(w.stats().forgotten, 1);
    }

    #[test]
    fn many_rewrites_keep_the_order_queue_bounded() {
        let mut w = Workloads::new(8, Box::new(NoLookup));
        for i in 0..10_000u32 {
            w.observe(&ev(
                SEC,
                1,
                "p",
                EventBody::Rename(RenameEvent { new_comm: Comm::from(if i % 2 == 0 { "a" } else { "b" }) }),
            ));
            w.observe(&exec(SEC, i % 16, "p", "/bin/p", "p"));
        }
        assert!(w.len() <= 8);
        assert!(w.order.len() <= 2 * 8 + 64);
    }

    #[test]
    fn replay_is_deterministic() {
        let events: Vec<Event> = (0..500u32)
            .flat_map(|i| {
                let pid = 1000 + i % 37;
                [
                    fork(u64::from(i) * SEC / 10, 1, "init", pid),
                    exec(u64::from(i) * SEC / 10, pid, "p", &format!("/bin/p{}", i % 7), "p"),
                    exit(u64::from(i) * SEC / 10, pid, i % 3 == 0),
                ]
            })
            .collect();
        let run = || {
            let mut w = Workloads::new(16, Box::new(NoLookup));
            w.observe(&snapshot(0, 1, "init", "/sbin/init", "/sbin/init", "/init.scope"));
            let mut names = Vec::new();
            for e in &events {
                w.observe(e);
                names.push(w.of(e.pid, "?").name.clone());
            }
            (names, w.stats())
        };
        assert_eq!(run(), run());
    }
}
