//! Naming real processes from the live /proc: interpreters with scripts,
//! modules, inline code, shebang scripts, env. Each case is also named as an
//! exec event would describe it (the path given to execve, not the resolved
//! exe) and must get the same name.

use kindling_procfs::ProcFs;
use kindling_workloads::{identify, process_name, ProcFsLookup, ProcessLookup, Workloads};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Children killed when the test ends, also on a failed assertion.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Case {
    /// The program as given to execve (what an exec event's filename says).
    program: PathBuf,
    args: Vec<String>,
    want: &'static str,
}

fn case(program: impl AsRef<Path>, args: &[&str], want: &'static str) -> Case {
    Case { program: program.as_ref().to_path_buf(), args: args.iter().map(|a| a.to_string()).collect(), want }
}

fn script(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).expect("write script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    path.display().to_string()
}

#[test]
fn real_processes_are_named_the_same_from_proc_and_from_exec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // All files are written (and closed) before any child is started, so no
    // child can inherit a file still open for writing (ETXTBSY on exec).
    let orders = script(d, "orders_api.py", "import time\ntime.sleep(60)\n");
    let deploy = script(d, "deploy.sh", "sleep 60\n");
    let job = script(d, "job.sh", "#!/bin/sh\nsleep 60\n");
    let server = script(d, "server.js", "setTimeout(() => {}, 60000);\n");
    let munin = script(d, "munin.pl", "sleep 60;\n");
    let java_src = script(
        d,
        "Sleep.java",
        "class Sleep { public static void main(String[] a) throws Exception { Thread.sleep(60000); } }\n",
    );
    let tmp = d.display().to_string();

    let mut cases = vec![
        case("/usr/bin/sleep", &["sleep", "60"], "sleep"),
        case("/usr/bin/python3", &["python3", "-u", &orders], "python3 orders_api.py"),
        case(
            "/usr/bin/python3",
            &["/usr/bin/python3", "-X", "dev", &orders, "--port", "0"],
            "python3 orders_api.py",
        ),
        // Inline code names no program.
        case("/usr/bin/python3", &["python3", "-c", "import time; time.sleep(60)"], "python3"),
        case(
            "/usr/bin/python3",
            &["python3", "-m", "http.server", "0", "--bind", "127.0.0.1"],
            "python3 -m http.server",
        ),
        // env has exec'd python or not yet: the same name either way.
        case("/usr/bin/env", &["env", "FOO=1", "/usr/bin/python3", &orders], "python3 orders_api.py"),
        case("/usr/bin/bash", &["bash", &deploy], "bash deploy.sh"),
        case("/usr/bin/bash", &["bash", "-c", "sleep 60; true"], "bash"),
        // A shebang script started directly: the exec event's filename is
        // the script, argv[0] the interpreter.
        case(&job, &[&job], "sh job.sh"),
        case("/usr/bin/perl", &["perl", "-w", &munin], "perl munin.pl"),
        case("/usr/bin/perl", &["perl", "-e", "sleep 60"], "perl"),
        case("/usr/bin/node", &["node", "--max-old-space-size=64", &server], "node server.js"),
        case(
            "/usr/bin/java",
            &["java", "-Xmx64m", "-Dapp=orders", "-cp", &tmp, &java_src],
            "java Sleep.java",
        ),
    ];
    cases.retain(|c| {
        let present = c.program.exists();
        if !present {
            eprintln!("skipping {}: not installed", c.program.display());
        }
        present
    });

    let mut children = Children(Vec::new());
    for c in &cases {
        let child = Command::new(&c.program)
            .arg0(&c.args[0])
            .args(&c.args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", c.program.display()));
        children.0.push(child);
    }

    let procfs = ProcFs::default();
    let lookup = ProcFsLookup::default();
    let mut workloads = Workloads::new(64, Box::new(ProcFsLookup::default()));
    let own_cgroup = procfs.cgroup(std::process::id());
    for (c, child) in cases.iter().zip(&children.0) {
        let pid = child.id();
        // A launcher that re-executes itself (the JVM's does) shows an empty
        // command line for a moment: wait for the program to settle.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while procfs.cmdline(pid).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let facts = lookup.lookup(pid).unwrap_or_else(|| panic!("pid {pid} ({}) gone", c.want));
        // Spawn returns after the exec: the facts are the new program's.
        assert!(!facts.exe.is_empty(), "{}: no exe", c.want);
        eprintln!("{:>24} <- exe {} argv {:?}", c.want, facts.exe, facts.cmdline);
        let from_proc = workloads.of(pid, &facts.comm);
        assert_eq!(from_proc.name, c.want, "from /proc: {facts:?}");
        // Same cgroup as this test: the same kind and container.
        let own = identify(&own_cgroup, "", &[], "x");
        assert_eq!((from_proc.kind, &from_proc.container_id), (own.kind, &own.container_id));
        // An exec event carries the path given to execve and the argv the
        // new program starts with (for a shebang script, rewritten by the
        // kernel to interpreter + script: what /proc shows).
        let exec_path = c.program.display().to_string();
        assert_eq!(process_name(&exec_path, &facts.cmdline, &facts.comm), c.want, "as an exec event");
    }
}

trait Arg0 {
    fn arg0(&mut self, arg0: &str) -> &mut Self;
}

impl Arg0 for Command {
    fn arg0(&mut self, arg0: &str) -> &mut Self {
        std::os::unix::process::CommandExt::arg0(self, arg0)
    }
}

/// A process first seen at exec: the cgroup comes from /proc (here a fake
/// one, cgroup v1 lines of a docker container), argv from the event.
#[test]
fn exec_takes_the_cgroup_from_proc() {
    use kindling_events::model::{Comm, Event, EventBody, ExecEvent};
    use kindling_workloads::WorkloadKind;

    let root = tempfile::tempdir().expect("tempdir");
    let p = root.path().join("4242");
    fs::create_dir_all(&p).expect("mkdir");
    let id = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    fs::write(p.join("stat"), "4242 (python3) S 1 4242 4242 0 -1").expect("stat");
    fs::write(p.join("cmdline"), b"python3\0/app/orders_api.py\0").expect("cmdline");
    fs::write(p.join("cgroup"), format!("12:pids:/docker/{id}\n1:name=systemd:/docker/{id}\n"))
        .expect("cgroup");
    std::os::unix::fs::symlink("/usr/bin/python3.11", p.join("exe")).expect("exe");

    let lookup = ProcFsLookup::new(ProcFs::new(root.path()));
    assert_eq!(
        lookup.cgroup(4242).as_deref(),
        Some(format!("12:pids:/docker/{id};1:name=systemd:/docker/{id}").as_str())
    );
    assert_eq!(lookup.cgroup(4243), None);

    let mut workloads = Workloads::new(16, Box::new(lookup));
    let exec = ExecEvent {
        ppid: 1,
        filename: "/usr/bin/python3".into(),
        args: vec!["python3".into(), "/app/orders_api.py".into()],
    };
    let ev = Event {
        ts_ns: 1,
        pid: 4242,
        tid: 4242,
        cpu: 0,
        comm: Comm::from("python3"),
        body: EventBody::Exec(exec),
    };
    workloads.observe(&ev);
    let w = workloads.of(4242, "python3");
    assert_eq!(w.kind, WorkloadKind::Container);
    assert_eq!(w.name, "python3 orders_api.py");
    assert_eq!(w.container_id, "9f86d081884c");
    // Not in the fake /proc: named by the comm given.
    assert_eq!(workloads.of(4243, "ghost").name, "ghost");
}
