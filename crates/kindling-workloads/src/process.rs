//! The process name (rule 3 of the crate documentation): the program, and
//! for interpreters and VMs what they run.

use crate::bound_name;
use crate::interp::Interp;

/// The name of a process from its executable path, argv and comm; bounded.
pub fn process_name(exe: &str, cmdline: &[String], comm: &str) -> String {
    let argv = split_argv(cmdline);
    bound_name(&name_of(exe, &argv, comm))
}

/// A whole command line in one argument (a title that kept the original
/// text, `"python3 app.py --port 80"`) is read as the arguments it shows.
fn split_argv(cmdline: &[String]) -> Vec<&str> {
    match cmdline {
        [only] if only.contains(char::is_whitespace) => only.split_whitespace().collect(),
        _ => cmdline.iter().map(String::as_str).collect(),
    }
}

fn name_of(exe: &str, argv: &[&str], comm: &str) -> String {
    let exe_name = basename(strip_deleted(exe));
    let arg0 = argv.first().map_or("", |a| program_word(a));
    if arg0 == "env" {
        let command = after_env(argv.get(1..).unwrap_or_default());
        if !command.is_empty() {
            // The command env runs is the process (a `#!/usr/bin/env python3`
            // script seen at exec, before env execs the interpreter).
            return name_of("", &command, comm);
        }
    }
    let args = argv.get(1..).unwrap_or_default();
    match (Interp::of(exe_name), Interp::of(arg0)) {
        // argv[0] spells the interpreter as it was invoked (`python3`, where
        // the exe resolves to `python3.11`): the same spelling as exec events.
        (Some(a), Some(b)) if a == b => with_program(b, arg0, args),
        (Some(_), _) if arg0.is_empty() => exe_name.to_string(),
        // The interpreter rewrote its command line into a title.
        (Some(_), _) => arg0.to_string(),
        // A shebang script at exec (filename = the script, argv[0] = the
        // interpreter), busybox's `sh`, or an unreadable exe.
        (None, Some(b)) => with_program(b, arg0, args),
        // The name it was started as: multi-call binaries are symlinks
        // (Debian's redis-server -> redis-check-rdb, busybox applets), so the
        // resolved exe would name the wrong program.
        (None, None) => {
            [arg0, exe_name, comm].into_iter().find(|s| !s.is_empty()).unwrap_or_default().to_string()
        }
    }
}

fn with_program(interp: Interp, display: &str, args: &[&str]) -> String {
    match interp.program(args) {
        Some(program) => format!("{display} {program}"),
        None => display.to_string(),
    }
}

/// argv\[0\] as a program name: its first word, without the `-` of a login
/// shell or a title's brackets and trailing `:`, then its basename.
fn program_word(arg0: &str) -> &str {
    let word = arg0.split_whitespace().next().unwrap_or_default();
    let word = word.trim_start_matches(['-', '[', '(']).trim_end_matches([':', ']', ')', ',']);
    basename(word)
}

/// What `env` runs: its arguments after its options and `NAME=value`
/// assignments (`-S "python3 -u"` splits its string into arguments).
fn after_env<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut i = 0;
    while let Some(&a) = args.get(i) {
        match a {
            "--" => return args.get(i + 1..).unwrap_or_default().to_vec(),
            "-u" | "-C" | "--unset" | "--chdir" => i += 2,
            "-S" | "--split-string" => {
                let mut out: Vec<&str> =
                    args.get(i + 1).map(|s| s.split_whitespace().collect()).unwrap_or_default();
                out.extend(args.get(i + 2..).unwrap_or_default());
                return out;
            }
            _ if a.starts_with("-S") && a.len() > 2 => {
                let mut out: Vec<&str> = a[2..].split_whitespace().collect();
                out.extend(args.get(i + 1..).unwrap_or_default());
                return out;
            }
            _ if a.starts_with('-') || a.contains('=') => i += 1,
            _ => return args.get(i..).unwrap_or_default().to_vec(),
        }
    }
    Vec::new()
}

/// The last component of a path (`""` for `/` or an empty path).
pub(crate) fn basename(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or_default()
}

/// /proc/PID/exe of a binary replaced on disk (a package upgrade while the
/// service runs) reads `/usr/sbin/nginx (deleted)`.
fn strip_deleted(exe: &str) -> &str {
    exe.strip_suffix(" (deleted)").unwrap_or(exe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').filter(|a| !a.is_empty()).map(String::from).collect()
    }

    fn name(exe: &str, cmdline: &str) -> String {
        process_name(exe, &argv(cmdline), "")
    }

    #[test]
    fn plain_programs_by_exe_then_argv0_then_comm() {
        assert_eq!(name("/usr/sbin/nginx", "nginx: master process /usr/sbin/nginx -g daemon off;"), "nginx");
        assert_eq!(name("/usr/local/bin/orders", "/usr/local/bin/orders --port 8080"), "orders");
        // No exe (not readable): argv[0], by its first word.
        assert_eq!(name("", "postgres: checkpointer"), "postgres");
        assert_eq!(name("", "/usr/sbin/sshd -D"), "sshd");
        // Nothing but the comm (kernel threads), taken as is.
        assert_eq!(process_name("", &[], "kworker/0:1"), "kworker/0:1");
        assert_eq!(process_name("", &[], ""), "");
    }

    #[test]
    fn a_replaced_binary_keeps_its_name() {
        assert_eq!(name("/usr/sbin/nginx (deleted)", "nginx: worker process"), "nginx");
    }

    #[test]
    fn the_name_it_was_started_as_wins_over_a_symlinked_exe() {
        // Multi-call binaries and alternatives: the name the user knows.
        assert_eq!(name("/usr/lib/jvm/x/bin/keytool", "keytool -list"), "keytool");
        assert_eq!(name("/usr/bin/vim.basic", "vi notes.txt"), "vi");
        assert_eq!(name("/usr/bin/redis-check-rdb", "redis-server *:6379"), "redis-server");
    }

    #[test]
    fn interpreters_spelt_as_invoked() {
        assert_eq!(name("/usr/bin/python3.11", "python3 orders_api.py"), "python3 orders_api.py");
        assert_eq!(
            name("/usr/bin/python3.11", "/usr/bin/python3 /srv/orders/orders_api.py"),
            "python3 orders_api.py"
        );
        assert_eq!(name("/usr/bin/python3.11", "/srv/.venv/bin/python app.py"), "python app.py");
        assert_eq!(name("/usr/bin/python3.11", "python3.11 app.py"), "python3.11 app.py");
        // An exec event: the unresolved path.
        assert_eq!(name("/usr/bin/python3", "python3 orders_api.py"), "python3 orders_api.py");
        assert_eq!(name("/usr/bin/dash", "sh /opt/deploy.sh"), "sh deploy.sh");
    }

    #[test]
    fn two_python_services_are_two_names() {
        let a = name("/usr/bin/python3.11", "python3 orders_api.py");
        let b = name("/usr/bin/python3.11", "python3 billing.py");
        assert_ne!(a, b);
    }

    #[test]
    fn shebang_scripts_at_exec() {
        // execve("/opt/deploy.sh") of `#!/bin/bash -e`: the filename is the
        // script, argv is rewritten by the kernel.
        assert_eq!(name("/opt/deploy.sh", "/bin/bash -e /opt/deploy.sh prod"), "bash deploy.sh");
        // /proc of the same process says the same.
        assert_eq!(name("/usr/bin/bash", "/bin/bash -e /opt/deploy.sh prod"), "bash deploy.sh");
        // gunicorn is a python script.
        assert_eq!(
            name("/usr/local/bin/gunicorn", "/usr/bin/python3 /usr/local/bin/gunicorn -w 4 app:app"),
            "python3 gunicorn"
        );
        assert_eq!(
            name("/usr/bin/python3.11", "/usr/bin/python3 /usr/local/bin/gunicorn -w 4 app:app"),
            "python3 gunicorn"
        );
    }

    #[test]
    fn env_is_skipped() {
        assert_eq!(name("/opt/tool.py", "/usr/bin/env python3 /opt/tool.py --x"), "python3 tool.py");
        assert_eq!(name("/usr/bin/env", "env -i PATH=/bin -u HOME node /srv/server.js"), "node server.js");
        assert_eq!(name("/opt/t.py", "/usr/bin/env -S python3 -u /opt/t.py"), "python3 t.py");
        assert_eq!(
            process_name(
                "/opt/t.py",
                &["/usr/bin/env".into(), "-S python3 -u".into(), "/opt/t.py".into()],
                ""
            ),
            "python3 t.py"
        );
        assert_eq!(name("/usr/bin/env", "env -- ruby /srv/app.rb"), "ruby app.rb");
        // env alone (printing the environment) is env.
        assert_eq!(name("/usr/bin/env", "env"), "env");
        assert_eq!(name("/usr/bin/env", "env FOO=1"), "env");
    }

    #[test]
    fn titles() {
        // setproctitle / process.title replaced argv.
        assert_eq!(name("/usr/bin/python3.11", "gunicorn: master [orders:app]"), "gunicorn");
        assert_eq!(name("/usr/bin/python3.11", "[celeryd: celery@host:MainProcess]"), "celeryd");
        assert_eq!(process_name("/usr/bin/node", &["orders-api".into()], "node"), "orders-api");
        // A title that kept the whole command line in argv[0].
        assert_eq!(
            process_name("/usr/bin/python3.11", &["python3 orders_api.py --port 80".into()], ""),
            "python3 orders_api.py"
        );
        // An interpreter with no argv at all (a zombie).
        assert_eq!(process_name("/usr/bin/python3.11", &[], "python3"), "python3.11");
    }

    #[test]
    fn login_and_interactive_shells() {
        assert_eq!(name("/usr/bin/bash", "-bash"), "bash");
        assert_eq!(name("/usr/bin/bash", "bash -l"), "bash");
        assert_eq!(name("/usr/bin/bash", "bash"), "bash");
        assert_eq!(name("/usr/bin/zsh", "-zsh"), "zsh");
    }

    #[test]
    fn busybox_shell() {
        // The exe (busybox) is no interpreter, argv[0] is: a shell.
        assert_eq!(name("/bin/busybox", "sh /etc/init.d/rcS"), "sh rcS");
        assert_eq!(name("", "sh /etc/init.d/rcS"), "sh rcS");
    }

    #[test]
    fn basenames() {
        assert_eq!(basename("/usr/bin/python3"), "python3");
        assert_eq!(basename("python3"), "python3");
        assert_eq!(basename("/opt/app/"), "app");
        assert_eq!(basename("/"), "");
        assert_eq!(basename(""), "");
        assert_eq!(program_word("-bash"), "bash");
        assert_eq!(program_word("nginx: worker"), "nginx");
    }
}

#[cfg(test)]
mod symlink_tests {
    use super::*;

    #[test]
    fn multi_call_binaries_are_named_as_started() {
        let argv = vec!["redis-server 127.0.0.1:6379".to_string()];
        assert_eq!(process_name("/usr/bin/redis-check-rdb", &argv, "redis-server"), "redis-server");
        let argv = vec!["postgres: postgres postgres 127.0.0.1(5432) idle".to_string()];
        assert_eq!(process_name("/usr/lib/postgresql/15/bin/postgres", &argv, "postgres"), "postgres");
        assert_eq!(process_name("/usr/bin/busybox", &["ls".to_string()], "ls"), "ls");
        assert_eq!(process_name("/usr/sbin/nginx", &[], "nginx"), "nginx");
    }
}
