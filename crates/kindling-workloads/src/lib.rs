//! Workload identity: which workload a process belongs to, for the service
//! map's nodes and the `workload_kind` / `workload_name` / `container_id`
//! metric labels.
//!
//! [`identify`] is the pure naming function; [`Workloads`] is the bounded
//! cache that learns process facts from the event stream (and, live, from
//! /proc) so that naming a request's process costs one map lookup.
//!
//! # Naming rules
//!
//! The cgroup decides the kind, the process decides the name:
//!
//! 1. **Container** — a path segment of the cgroup holds a 64-hex container id:
//!    a bare id (`/docker/<id>`, cgroupfs kubepods `.../pod<uid>/<id>`,
//!    containerd namespaces `/k8s.io/<id>`) or a runtime scope
//!    `<runtime>-<id>[.scope]` with runtime `docker`, `cri-containerd`,
//!    `containerd`, `crio`, `libpod` or `nerdctl`. `container_id` is the
//!    first 12 hex digits; the innermost id wins (a pod inside a `kind` node
//!    container is the pod's container). The monitors `crio-conmon-<id>` and
//!    `libpod-conmon-<id>` run next to a container, not in it: not containers.
//!    A `pod<uid>` segment (`pod<uuid>` or `kubepods-*-pod<uuid_with_underscores>.slice`)
//!    gives `pod_uid`, with dashes, for Kubernetes enrichment.
//!    The name is the process name (rule 3).
//! 2. **SystemdService** — else the first `<unit>.service` segment, at any
//!    depth (`/system.slice/foo.service/bar` is `foo`), named `<unit>` with
//!    systemd's `\xNN` escapes undone (`\x2d` -> `-`). Not naming a workload:
//!    `user@N.service` (a user manager; the user services under it do name
//!    one), transient `run-u<N>` / `run-r<hex>` / `run-p<pid>-i<N>` units (their
//!    names are counters), scopes (`session-N.scope`, `init.scope`), slices and
//!    the root `/`. A socket-activated per-connection instance
//!    (`sshd@3-10.0.0.1:22-10.0.0.2:5555`) is named by its template (`sshd`), so
//!    each connection is not a new workload; other instances keep theirs
//!    (`getty@tty1`, `postgresql@15-main`).
//! 3. **Process** — else the process name (also a Container's name):
//!    - the program is the name it was started as — argv\[0\]'s basename, by
//!      its first word without a trailing `:`, so a rewritten title like
//!      `nginx: worker process` reads `nginx` — else the basename of the
//!      executable (a ` (deleted)` suffix, left by a package upgrade, is
//!      dropped), else the comm. argv\[0\] comes first because multi-call
//!      binaries are symlinks (Debian's `redis-server` runs `redis-check-rdb`);
//!    - interpreters and VMs are named with what they run: `<interpreter>
//!      <program>`. The interpreter is spelt as argv\[0\] spells it when that
//!      is the same interpreter (`python3`, not the `python3.11` the symlink
//!      resolves to), so an exec event and /proc give the same name. The
//!      program is the basename of the script, or the module:
//!      - python (`python`, `python3`, `python3.11`, `pypy3`): options
//!        (`-u`, `-O`, clusters like `-uB`, `-X opt`, `-W arg`,
//!        `--check-hash-based-pycs mode`) are skipped; `python3 orders_api.py`,
//!        `python3 -m http.server`;
//!      - node/nodejs, ruby, perl, php, bash/sh/dash/zsh/ksh/ash/mksh, deno and
//!        bun (after `run`/`serve`), dotnet (after `exec`): the first operand
//!        after the options, knowing which options take a value
//!        (`node -r dotenv/config server.js` is `node server.js`, `ruby -S rake`
//!        is `ruby rake`, `php -f index.php` is `php index.php`, `dotnet
//!        app.dll`, `bun run dev` is `bun dev`);
//!      - java: `-jar app.jar` -> `java app.jar`; `-m mod/Main` -> `java
//!        mod/Main`; else the main class after the options, skipping the values
//!        of `-cp`/`-classpath`/`--class-path`, `-p`/`--module-path`,
//!        `--add-modules`, ... (`-D..`, `-X..`, `-XX:..` take none):
//!        `java com.example.OrdersApp`; a source file is `java Main.java`;
//!    - code given on the command line (`python3 -c`, `node -e`, `bash -c`,
//!      `perl -e`), stdin (`-`, `/dev/fd/N`, `bash -s`), a REPL or a login
//!      shell (`-bash`) is just the interpreter: it names no program;
//!    - a shebang script seen at exec has the script as its filename and the
//!      interpreter as argv\[0\]: it is the interpreter running the script
//!      (`bash deploy.sh`); `env` and its options and `NAME=value`
//!      assignments are skipped (`#!/usr/bin/env python3`);
//!    - an interpreter whose argv\[0\] is something else rewrote its command
//!      line into a title (setproctitle, `process.title`): the title's first
//!      word is the name (`gunicorn: master [app]` -> `gunicorn`);
//!    - a whole command line in one argument (some titles keep the original
//!      text) is split at whitespace first.
//!
//! Names are stable and bounded: basenames only (no directories, no temp
//! paths), no pids; control characters become `?`, and names are cut to
//! [`MAX_NAME_LEN`] bytes.
//!
//! # The cache
//!
//! [`Workloads::observe`] learns from the stream: a `ProcessSnapshot` gives
//! all facts; `Fork` gives the child its parent's facts and workload (shared)
//! until it execs; `Exec` gives exe and argv, and the cgroup from the
//! [`ProcessLookup`] (a child is moved into its service's or container's
//! cgroup between fork and exec), else the one inherited; a main-thread
//! `Rename` changes the comm; an `Exit` of the whole process forgets it
//! [`Workloads::DEFAULT_GRACE_NS`] of event time later, so the events and
//! records still queued for it are named. [`Workloads::of`] answers from the
//! cache, else the lookup (live /proc: [`ProcFsLookup`]; replay:
//! [`NoLookup`]), else names a process by the comm it is given; the answer is
//! cached either way. At capacity, exited processes go first, then the
//! oldest written.

mod cache;
mod cgroup;
mod interp;
mod process;

pub use cache::{NoLookup, ProcFsLookup, ProcessFacts, ProcessLookup, WorkloadStats, Workloads};
pub use cgroup::{parse_cgroup, CgroupIdentity};
pub use process::process_name;

use serde::{Deserialize, Serialize};

/// The longest workload name, in bytes (metric labels and map nodes).
pub const MAX_NAME_LEN: usize = 64;

/// What names a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    Container,
    SystemdService,
    Process,
}

impl WorkloadKind {
    /// The `workload_kind` label value.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Container => "container",
            WorkloadKind::SystemdService => "systemd_service",
            WorkloadKind::Process => "process",
        }
    }
}

/// The workload a process belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    /// The service name, or the process name (see the naming rules).
    pub name: String,
    /// The first 12 hex digits of the container id; empty unless a container.
    pub container_id: String,
    /// The Kubernetes pod uid from the cgroup (dashed), when a pod's container.
    pub pod_uid: String,
}

impl Workload {
    /// A workload named by its process only (no cgroup identity).
    pub fn process(name: impl Into<String>) -> Workload {
        Workload {
            kind: WorkloadKind::Process,
            name: name.into(),
            container_id: String::new(),
            pod_uid: String::new(),
        }
    }
}

/// Names the workload of a process from its cgroup (the v2 `0::` path, or the
/// v1 lines joined with `;`), executable path, argv and comm. Pure and
/// deterministic; see the crate documentation for the rules.
pub fn identify(cgroup: &str, exe: &str, cmdline: &[String], comm: &str) -> Workload {
    match parse_cgroup(cgroup) {
        CgroupIdentity::Container { id, pod_uid } => Workload {
            kind: WorkloadKind::Container,
            name: process_name(exe, cmdline, comm),
            container_id: id.get(..12).unwrap_or(&id).to_string(),
            pod_uid,
        },
        CgroupIdentity::Service(name) => Workload {
            kind: WorkloadKind::SystemdService,
            name: bound_name(&name),
            container_id: String::new(),
            pod_uid: String::new(),
        },
        CgroupIdentity::None => Workload::process(process_name(exe, cmdline, comm)),
    }
}

/// A name fit for a label: control characters replaced, at most
/// [`MAX_NAME_LEN`] bytes (cut at a character boundary).
pub(crate) fn bound_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_NAME_LEN));
    for c in name.chars() {
        let c = if c.is_control() { '?' } else { c };
        if out.len() + c.len_utf8() > MAX_NAME_LEN {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').filter(|a| !a.is_empty()).map(String::from).collect()
    }

    const ID: &str = "3f4e2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    #[test]
    fn kind_names() {
        assert_eq!(WorkloadKind::Container.name(), "container");
        assert_eq!(WorkloadKind::SystemdService.name(), "systemd_service");
        assert_eq!(WorkloadKind::Process.name(), "process");
        let json = serde_json::to_string(&WorkloadKind::SystemdService).unwrap();
        assert_eq!(json, "\"systemd_service\"");
    }

    #[test]
    fn a_container_is_named_by_its_process() {
        let w = identify(
            &format!("/system.slice/docker-{ID}.scope"),
            "/usr/bin/python3.11",
            &argv("python3 /app/orders_api.py"),
            "python3",
        );
        assert_eq!(w.kind, WorkloadKind::Container);
        assert_eq!(w.name, "python3 orders_api.py");
        assert_eq!(w.container_id, "3f4e2a1b9c8d");
        assert_eq!(w.pod_uid, "");
    }

    #[test]
    fn a_pod_container_keeps_the_pod_uid() {
        let cg = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b7f7c5e_2f4d_4c3b_9a1e_6d5c4b3a2f10.slice/cri-containerd-{ID}.scope"
        );
        let w = identify(&cg, "/usr/sbin/nginx", &argv("nginx: worker process"), "nginx");
        assert_eq!(w.kind, WorkloadKind::Container);
        assert_eq!(w.name, "nginx");
        assert_eq!(w.container_id, "3f4e2a1b9c8d");
        assert_eq!(w.pod_uid, "0b7f7c5e-2f4d-4c3b-9a1e-6d5c4b3a2f10");
    }

    #[test]
    fn a_systemd_service_is_named_by_its_unit() {
        let w = identify(
            "/system.slice/orders\\x2dapi.service",
            "/usr/bin/python3.11",
            &argv("python3 x.py"),
            "x",
        );
        assert_eq!(
            w,
            Workload {
                kind: WorkloadKind::SystemdService,
                name: "orders-api".into(),
                container_id: String::new(),
                pod_uid: String::new(),
            }
        );
    }

    #[test]
    fn otherwise_the_process() {
        for cg in ["/", "", "/user.slice/user-1000.slice/session-3.scope", "/init.scope"] {
            let w = identify(cg, "/usr/bin/node", &argv("node /srv/api/server.js"), "node");
            assert_eq!(w, Workload::process("node server.js"), "cgroup {cg:?}");
        }
    }

    #[test]
    fn names_are_bounded_and_printable() {
        let long = "x".repeat(200);
        assert_eq!(bound_name(&long).len(), MAX_NAME_LEN);
        assert_eq!(bound_name("a\tb\nc"), "a?b?c");
        // Never cuts inside a character.
        let wide = "é".repeat(40);
        let b = bound_name(&wide);
        assert!(b.len() <= MAX_NAME_LEN && b.chars().all(|c| c == 'é'));
        let w = identify("/", &format!("/opt/{long}"), &[], "");
        assert_eq!(w.name.len(), MAX_NAME_LEN);
        let cg = format!("/system.slice/{long}.service");
        assert_eq!(identify(&cg, "", &[], "").name.len(), MAX_NAME_LEN);
    }
}
