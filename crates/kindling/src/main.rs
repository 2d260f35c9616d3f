//! The `kindling` binary: parses the command line and wires the crates
//! together. Errors end here: a one-line message and exit 1 (usage errors
//! exit 2, from clap).

mod capture;
mod cli;
mod config;
mod output;
mod profile;
mod replay;
mod requests;
mod run;
mod selftest;
mod source;

use clap::Parser;
use cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Capture(a) => capture::run(a),
        Command::Requests(a) => requests::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Profile(a) => profile::run(a),
        Command::Selftest(a) => selftest::run(a),
    };
    if let Err(e) = result {
        // One line: the chain of causes joined, the way a user reads it.
        let msg = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
        eprintln!("kindling: {msg}");
        std::process::exit(1);
    }
}
