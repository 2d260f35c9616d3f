//! Interpreters and VMs, and how to find the program in their arguments.
//!
//! Each language's command line is read the way its own option parser reads
//! it, as far as naming needs: which options take a value (so the value is
//! not taken for the script), which run code given inline or from stdin (no
//! program to name), and which name the program themselves (`python -m`).

use crate::process::basename;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interp {
    Python,
    Node,
    Ruby,
    Perl,
    Php,
    Java,
    Shell,
    Dotnet,
    Deno,
    Bun,
}

impl Interp {
    /// The interpreter a program name is, if any (`python3.11`, `nodejs`, `sh`).
    pub(crate) fn of(name: &str) -> Option<Interp> {
        let interp = match name {
            "node" | "nodejs" => Interp::Node,
            "java" => Interp::Java,
            "bash" | "sh" | "dash" | "zsh" | "ksh" | "mksh" | "ash" => Interp::Shell,
            "dotnet" => Interp::Dotnet,
            "deno" => Interp::Deno,
            "bun" => Interp::Bun,
            // Versioned names: python3.11, pypy3, ruby3.0, perl5.36.0, php8.2.
            // Python's old ABI suffixes (python3.7m, python3.12d) included.
            _ if versioned(name, "python", "md") || versioned(name, "pypy", "") => Interp::Python,
            _ if versioned(name, "ruby", "") => Interp::Ruby,
            _ if versioned(name, "perl", "") => Interp::Perl,
            _ if versioned(name, "php", "") => Interp::Php,
            _ => return None,
        };
        Some(interp)
    }

    /// What the interpreter runs, from its arguments after argv\[0\]: a
    /// script's basename, `-m <module>` (python), a jar or main class (java);
    /// `None` for inline code, stdin, a REPL.
    pub(crate) fn program(self, args: &[&str]) -> Option<String> {
        match self {
            Interp::Python => match walk(&PYTHON, args) {
                Found::Operand(i) => script(args[i]),
                Found::Via(module) => Some(format!("-m {module}")),
                Found::Nothing => None,
            },
            Interp::Node => plain(&NODE, args),
            Interp::Ruby => plain(&RUBY, args),
            Interp::Perl => plain(&PERL, args),
            Interp::Php => plain(&PHP, args),
            Interp::Shell => plain(&SHELL, args),
            Interp::Java => java(args),
            Interp::Dotnet => with_verbs(&DOTNET, args, &["exec"], &[]),
            Interp::Deno => with_verbs(&DENO, args, &["run", "serve"], &["eval", "repl"]),
            Interp::Bun => with_verbs(&BUN, args, &["run"], &["repl"]),
        }
    }
}

/// `name` is `base` followed by a version (digits and dots), possibly with
/// one of `suffixes` at the end.
fn versioned(name: &str, base: &str, suffixes: &str) -> bool {
    let Some(version) = name.strip_prefix(base) else { return false };
    if version.is_empty() {
        return true;
    }
    let version = version.strip_suffix(|c| suffixes.contains(c)).unwrap_or(version);
    version.starts_with(|c: char| c.is_ascii_digit())
        && version.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// A script argument as a name: its basename. Stdin in its various spellings
/// (`-`, `/dev/stdin`, `/dev/fd/63` from `<(...)`) names nothing.
fn script(arg: &str) -> Option<String> {
    if arg == "-" || arg.starts_with("/dev/") || arg.starts_with("/proc/") {
        return None;
    }
    let name = basename(arg);
    (!name.is_empty()).then(|| name.to_string())
}

/// How an interpreter's options read, getopt-style: short options cluster
/// (`-uB`), long ones are `--name` or `--name=value`.
struct Grammar {
    /// Short options taking a value: the rest of the cluster, else the next argument.
    short_value: &'static str,
    /// Short options taking only an attached value (the rest of the cluster).
    short_attached: &'static str,
    /// Short options running code given inline: no program.
    short_eval: &'static str,
    /// Short options reading the program from stdin.
    short_stdin: &'static str,
    /// Short options whose value is the program (`python -m`, `php -f`, `ruby -S`).
    short_program: &'static str,
    long_value: &'static [&'static str],
    long_eval: &'static [&'static str],
    long_program: &'static [&'static str],
    /// Shells also take options with `+` (`+o posix`).
    plus_options: bool,
}

const NONE: Grammar = Grammar {
    short_value: "",
    short_attached: "",
    short_eval: "",
    short_stdin: "",
    short_program: "",
    long_value: &[],
    long_eval: &[],
    long_program: &[],
    plus_options: false,
};

const PYTHON: Grammar = Grammar {
    short_value: "WXQ",
    short_eval: "c",
    short_program: "m",
    long_value: &["check-hash-based-pycs"],
    ..NONE
};

const NODE: Grammar = Grammar {
    short_value: "rC",
    short_eval: "ep",
    long_value: &[
        "require",
        "import",
        "loader",
        "experimental-loader",
        "conditions",
        "title",
        "env-file",
        "input-type",
        "inspect-port",
        "debug-port",
        "openssl-config",
        "icu-data-dir",
        "redirect-warnings",
        "diagnostic-dir",
        "report-dir",
        "report-directory",
        "report-filename",
        "report-signal",
        "heapsnapshot-signal",
        "cpu-prof-dir",
        "cpu-prof-name",
        "heap-prof-dir",
        "heap-prof-name",
        "unhandled-rejections",
        "dns-result-order",
        "disable-warning",
        "secure-heap",
        "secure-heap-min",
    ],
    long_eval: &["eval", "print"],
    ..NONE
};

const RUBY: Grammar = Grammar {
    short_value: "ICEr",
    // -0[octal] -F<pattern> -K<kcode> -T[level] -W[level] -x[dir]
    short_attached: "0FKTWx",
    short_eval: "e",
    short_program: "S",
    long_value: &["encoding", "external-encoding", "internal-encoding", "enable", "disable"],
    ..NONE
};

const PERL: Grammar = Grammar {
    // -C[n] -d[:Mod] -D[flags] -i[ext] -I<dir> -m/-M<module> -x[dir] -V[:name];
    // -l and -0 take digits only, so `-lane` is -l -a -n -e.
    short_attached: "CdDiImMxV",
    short_eval: "eE",
    ..NONE
};

const PHP: Grammar = Grammar {
    // -c <ini> -d <k=v> -z <ext> -t <docroot> -S <addr:port>
    short_value: "cdztS",
    short_eval: "rBRE",
    short_program: "f",
    long_value: &["php-ini", "define", "zend-extension"],
    long_eval: &["run", "process-begin", "process-code", "process-end"],
    long_program: &["file"],
    ..NONE
};

const SHELL: Grammar = Grammar {
    short_value: "oO",
    short_eval: "c",
    short_stdin: "s",
    long_value: &["rcfile", "init-file"],
    plus_options: true,
    ..NONE
};

const DOTNET: Grammar = Grammar {
    long_value: &[
        "additionalprobingpath",
        "additional-deps",
        "depsfile",
        "runtimeconfig",
        "fx-version",
        "roll-forward",
        "roll-forward-on-no-candidate-fx",
    ],
    ..NONE
};

const DENO: Grammar = Grammar {
    short_value: "cL",
    long_value: &["config", "import-map", "cert", "location", "seed", "log-level"],
    ..NONE
};

const BUN: Grammar = Grammar {
    short_value: "cr",
    short_eval: "ep",
    long_value: &["cwd", "config", "preload", "tsconfig-override", "env-file"],
    long_eval: &["eval", "print"],
    ..NONE
};

/// Where the program is.
enum Found<'a> {
    /// The first operand (not an option), by index.
    Operand(usize),
    /// An option's value names it.
    Via(&'a str),
    Nothing,
}

/// What one cluster of short options does.
enum Cluster<'a> {
    Flags,
    ValueNext,
    Eval,
    Program(&'a str),
    ProgramNext,
}

fn walk<'a>(g: &Grammar, args: &[&'a str]) -> Found<'a> {
    let mut i = 0;
    while let Some(&a) = args.get(i) {
        if a == "--" {
            return if i + 1 < args.len() { Found::Operand(i + 1) } else { Found::Nothing };
        }
        if a == "-" {
            return Found::Nothing;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (long, None),
            };
            if g.long_eval.contains(&name) {
                return Found::Nothing;
            }
            if g.long_program.contains(&name) {
                return via(attached.or_else(|| args.get(i + 1).copied()));
            }
            i += if attached.is_none() && g.long_value.contains(&name) { 2 } else { 1 };
            continue;
        }
        let cluster = a.strip_prefix('-').or_else(|| a.strip_prefix('+').filter(|_| g.plus_options));
        let Some(cluster) = cluster else { return Found::Operand(i) };
        match short_cluster(g, cluster) {
            Cluster::Flags => i += 1,
            Cluster::ValueNext => i += 2,
            Cluster::Eval => return Found::Nothing,
            Cluster::Program(value) => return Found::Via(value),
            Cluster::ProgramNext => return via(args.get(i + 1).copied()),
        }
    }
    Found::Nothing
}

fn via(value: Option<&str>) -> Found<'_> {
    value.map_or(Found::Nothing, Found::Via)
}

fn short_cluster<'a>(g: &Grammar, cluster: &'a str) -> Cluster<'a> {
    for (pos, c) in cluster.char_indices() {
        let rest = &cluster[pos + c.len_utf8()..];
        if g.short_eval.contains(c) || g.short_stdin.contains(c) {
            return Cluster::Eval;
        }
        if g.short_program.contains(c) {
            return if rest.is_empty() { Cluster::ProgramNext } else { Cluster::Program(rest) };
        }
        if g.short_value.contains(c) {
            return if rest.is_empty() { Cluster::ValueNext } else { Cluster::Flags };
        }
        if g.short_attached.contains(c) {
            return Cluster::Flags;
        }
    }
    Cluster::Flags
}

/// The program is the first operand, or the value of a program option.
fn plain(g: &Grammar, args: &[&str]) -> Option<String> {
    match walk(g, args) {
        Found::Operand(i) => script(args[i]),
        Found::Via(v) => script(v),
        Found::Nothing => None,
    }
}

/// Tools with subcommands: after a `run` verb the next operand is the
/// program; `none` verbs (`eval`, `repl`) run no program; any other operand
/// (a script, `bun run`'s package script, an SDK verb) is the name.
fn with_verbs(g: &Grammar, args: &[&str], run: &[&str], none: &[&str]) -> Option<String> {
    match walk(g, args) {
        Found::Operand(i) if run.contains(&args[i]) => plain(g, args.get(i + 1..).unwrap_or_default()),
        Found::Operand(i) if none.contains(&args[i]) => None,
        Found::Operand(i) => script(args[i]),
        Found::Via(v) => script(v),
        Found::Nothing => None,
    }
}

/// Java launcher options that take the next argument as their value.
const JAVA_VALUE: [&str; 14] = [
    "-cp",
    "-classpath",
    "--class-path",
    "-p",
    "--module-path",
    "--upgrade-module-path",
    "--add-modules",
    "--add-exports",
    "--add-opens",
    "--add-reads",
    "--patch-module",
    "--limit-modules",
    "--enable-native-access",
    "--source",
];

/// `-jar app.jar` -> `app.jar`; `-m mod/Main` -> `mod/Main`; else the main
/// class (or source file) after the options. `-D..`, `-X..`, `-XX:..`,
/// `-javaagent:..` and `@argfiles` take no separate value.
fn java(args: &[&str]) -> Option<String> {
    let mut i = 0;
    while let Some(&a) = args.get(i) {
        match a {
            "-jar" => return args.get(i + 1).and_then(|jar| script(jar)),
            "-m" | "--module" => return args.get(i + 1).map(|m| m.to_string()),
            _ if a.starts_with("--module=") => return a.get("--module=".len()..).map(String::from),
            _ if JAVA_VALUE.contains(&a) => i += 2,
            _ if a.starts_with('-') || a.starts_with('@') => i += 1,
            // A main class has no `/`; a source file (`java src/Main.java`) may.
            _ => return script(a),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(interp: Interp, args: &str) -> Option<String> {
        let args: Vec<&str> = args.split(' ').filter(|a| !a.is_empty()).collect();
        interp.program(&args)
    }

    fn is(interp: Interp, args: &str, want: &str) {
        assert_eq!(prog(interp, args).as_deref(), Some(want), "{interp:?} {args:?}");
    }

    fn none(interp: Interp, args: &str) {
        assert_eq!(prog(interp, args), None, "{interp:?} {args:?}");
    }

    #[test]
    fn interpreter_names() {
        for n in [
            "python",
            "python3",
            "python3.11",
            "python2.7",
            "python3.7m",
            "python3.12d",
            "pypy",
            "pypy3",
            "pypy3.10",
        ] {
            assert_eq!(Interp::of(n), Some(Interp::Python), "{n}");
        }
        for n in ["python3-config", "pythonista", "python3.x", "python-m", "pythonm"] {
            assert_eq!(Interp::of(n), None, "{n}");
        }
        assert_eq!(Interp::of("nodejs"), Some(Interp::Node));
        assert_eq!(Interp::of("ruby3.0"), Some(Interp::Ruby));
        assert_eq!(Interp::of("perl5.36.0"), Some(Interp::Perl));
        assert_eq!(Interp::of("php8.2"), Some(Interp::Php));
        assert_eq!(Interp::of("php-fpm8.2"), None);
        assert_eq!(Interp::of("dash"), Some(Interp::Shell));
        assert_eq!(Interp::of("javac"), None);
        assert_eq!(Interp::of("gunicorn"), None);
        assert_eq!(Interp::of("uwsgi"), None);
        assert_eq!(Interp::of(""), None);
    }

    #[test]
    fn python() {
        use Interp::Python as P;
        is(P, "orders_api.py", "orders_api.py");
        is(P, "/srv/orders/orders_api.py --port 8080", "orders_api.py");
        is(P, "-u -O orders_api.py", "orders_api.py");
        is(P, "-uB orders_api.py", "orders_api.py");
        is(P, "-X dev -W ignore orders_api.py", "orders_api.py");
        is(P, "-Xdev -Wignore::DeprecationWarning orders_api.py", "orders_api.py");
        is(P, "--check-hash-based-pycs always app.py", "app.py");
        is(P, "-i app.py", "app.py");
        is(P, "-- app.py", "app.py");
        is(P, "-m http.server 8000", "-m http.server");
        is(P, "-u -m celery worker", "-m celery");
        is(P, "-um uvicorn main:app", "-m uvicorn");
        is(P, "-muvicorn main:app", "-m uvicorn");
        // Inline code, stdin, a REPL: no program.
        none(P, "-c import time; time.sleep(9)");
        none(P, "-uc pass");
        none(P, "-");
        none(P, "/dev/fd/63");
        none(P, "");
        none(P, "-i");
        none(P, "-m");
        none(P, "--version");
    }

    #[test]
    fn node() {
        use Interp::Node as N;
        is(N, "server.js", "server.js");
        is(N, "/srv/api/dist/server.js", "server.js");
        is(N, "--max-old-space-size=4096 --inspect server.js", "server.js");
        is(N, "-r dotenv/config server.js", "server.js");
        is(N, "--require ts-node/register src/index.ts", "index.ts");
        is(N, "--import=tsx app.ts", "app.ts");
        is(N, "--env-file .env app.mjs", "app.mjs");
        none(N, "-e console.log(1)");
        none(N, "-pe 1+1");
        none(N, "--eval x");
        none(N, "");
        none(N, "--inspect");
    }

    #[test]
    fn ruby_perl_php() {
        is(Interp::Ruby, "app.rb", "app.rb");
        is(Interp::Ruby, "-w -Ilib -r json bin/server.rb", "server.rb");
        is(Interp::Ruby, "-I lib -rbundler/setup config.ru", "config.ru");
        is(Interp::Ruby, "-S rake jobs:work", "rake");
        is(Interp::Ruby, "-W0 -S puma -C config/puma.rb", "puma");
        none(Interp::Ruby, "-e puts(1)");
        none(Interp::Ruby, "-ne print");
        is(Interp::Perl, "-w /usr/sbin/munin-node", "munin-node");
        is(Interp::Perl, "-T -I/opt/lib -MData::Dumper app.pl", "app.pl");
        is(Interp::Perl, "-Mstrict -Mfeature=say app.pl", "app.pl");
        none(Interp::Perl, "-lane print");
        none(Interp::Perl, "-E say");
        is(Interp::Php, "index.php", "index.php");
        is(Interp::Php, "-d memory_limit=-1 -c /etc/php.ini artisan queue:work", "artisan");
        is(Interp::Php, "-f /var/www/cron.php", "cron.php");
        is(Interp::Php, "--file=/var/www/cron.php", "cron.php");
        is(Interp::Php, "-S 0.0.0.0:8000 -t public router.php", "router.php");
        none(Interp::Php, "-S 0.0.0.0:8000 -t public");
        none(Interp::Php, "-r echo(1);");
        none(Interp::Php, "-a");
    }

    #[test]
    fn shells() {
        use Interp::Shell as S;
        is(S, "deploy.sh", "deploy.sh");
        is(S, "-e /opt/deploy.sh prod", "deploy.sh");
        is(S, "-ex -o pipefail deploy.sh", "deploy.sh");
        is(S, "+o posix -O extglob deploy.sh", "deploy.sh");
        is(S, "--norc --rcfile /etc/x deploy.sh", "deploy.sh");
        none(S, "-c sleep 5");
        none(S, "-ec sleep 5");
        none(S, "-s arg");
        none(S, "-l");
        none(S, "-i");
        none(S, "");
        // Process substitution: `bash <(curl ...)`.
        none(S, "/dev/fd/63");
    }

    #[test]
    fn java() {
        use Interp::Java as J;
        is(J, "-jar /opt/app/orders-1.2.jar", "orders-1.2.jar");
        is(J, "-Xmx512m -Dspring.profiles.active=prod -jar app.jar --server.port=80", "app.jar");
        is(J, "-cp /opt/lib/*:/opt/app com.example.OrdersApp", "com.example.OrdersApp");
        is(
            J,
            "-classpath a.jar:b.jar -XX:+UseG1GC -Dx=y org.apache.catalina.startup.Bootstrap start",
            "org.apache.catalina.startup.Bootstrap",
        );
        is(J, "--class-path app.jar -ea -verbose:gc -javaagent:/opt/agent.jar com.x.Main", "com.x.Main");
        is(J, "-p mods -m com.example/com.example.Main", "com.example/com.example.Main");
        is(J, "--module-path mods --module com.example", "com.example");
        is(J, "--module-path=mods --module=com.example/com.example.Main", "com.example/com.example.Main");
        is(J, "--add-opens java.base/java.lang=ALL-UNNAMED -cp x Main", "Main");
        is(J, "@/opt/app/jvm.args -cp x Main", "Main");
        is(J, "--source 21 /opt/src/Tool.java", "Tool.java");
        is(J, "Sleep.java", "Sleep.java");
        none(J, "-version");
        none(J, "-cp x");
        none(J, "-jar");
        none(J, "");
    }

    #[test]
    fn dotnet_deno_bun() {
        is(Interp::Dotnet, "Orders.Api.dll", "Orders.Api.dll");
        is(Interp::Dotnet, "/app/Orders.Api.dll --urls http://*:80", "Orders.Api.dll");
        is(Interp::Dotnet, "exec --runtimeconfig x.json /app/Orders.dll", "Orders.dll");
        is(Interp::Dotnet, "--roll-forward Major app.dll", "app.dll");
        is(Interp::Dotnet, "run", "run");
        none(Interp::Dotnet, "");
        is(Interp::Deno, "run --allow-net --config deno.json server.ts", "server.ts");
        is(Interp::Deno, "run -A -c deno.json https://example.com/x/mod.ts", "mod.ts");
        is(Interp::Deno, "serve main.ts", "main.ts");
        is(Interp::Deno, "main.ts", "main.ts");
        none(Interp::Deno, "eval console.log(1)");
        none(Interp::Deno, "repl");
        none(Interp::Deno, "");
        is(Interp::Bun, "run dev", "dev");
        is(Interp::Bun, "run --watch src/index.ts", "index.ts");
        is(Interp::Bun, "index.ts", "index.ts");
        is(Interp::Bun, "--preload ./setup.ts server.ts", "server.ts");
        none(Interp::Bun, "-e 1");
        none(Interp::Bun, "repl");
    }
}
