//! `kindling replay`: a capture file through the same analysis as live events.

use crate::cli::ReplayArgs;
use crate::output::{Printer, RequestPrinter};
use kindling_events::capture::CaptureReader;
use kindling_pipeline::{Pipeline, PipelineConfig};
use kindling_workloads::NoLookup;
use kindling_sockets::SocketTable;
use std::io::ErrorKind;

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let reader = CaptureReader::open(&args.file)?;
    let stdout = std::io::stdout();
    let out = std::io::BufWriter::new(stdout.lock());
    let result = if args.events { print_events(reader, out, &args) } else { print_requests(reader, out, &args) };
    match result {
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == ErrorKind::BrokenPipe) => Ok(()),
        r => r,
    }
}

fn print_events<R: std::io::BufRead, W: std::io::Write>(
    reader: CaptureReader<R>,
    out: W,
    args: &ReplayArgs,
) -> anyhow::Result<()> {
    let mut printer = Printer::new(out, args.json, args.payload);
    let mut table = SocketTable::default();
    for ev in reader {
        let mut ev = ev?;
        table.observe(&mut ev);
        printer.print(&ev)?;
    }
    printer.flush()?;
    Ok(())
}

fn print_requests<R: std::io::BufRead, W: std::io::Write>(
    reader: CaptureReader<R>,
    out: W,
    args: &ReplayArgs,
) -> anyhow::Result<()> {
    let mut printer = RequestPrinter::new(out, args.json);
    // A recording carries its own process facts: never read this host's /proc.
    let mut pipeline = Pipeline::new(PipelineConfig::default(), Box::new(NoLookup));
    for ev in reader {
        let mut ev = ev?;
        for r in pipeline.process(&mut ev) {
            printer.print(r)?;
        }
    }
    for r in pipeline.finish() {
        printer.print(r)?;
    }
    printer.flush()?;
    Ok(())
}
