//! `kindling replay`: a capture file through the same path as live events.

use crate::cli::ReplayArgs;
use crate::output::Printer;
use kindling_events::capture::CaptureReader;
use kindling_sockets::SocketTable;

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let reader = CaptureReader::open(&args.file)?;
    let stdout = std::io::stdout();
    let mut printer = Printer::new(std::io::BufWriter::new(stdout.lock()), args.json, args.payload);
    let mut table = SocketTable::default();
    for ev in reader {
        let mut ev = ev?;
        table.observe(&mut ev);
        if let Err(e) = printer.print(&ev) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    printer.flush().ok();
    Ok(())
}
