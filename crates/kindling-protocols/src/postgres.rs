//! PLACEHOLDER: being implemented (see the parser work split in docs/ARCHITECTURE.md).

use crate::{Chunk, ParseEvent, Parser, Protocol};

pub fn detect(chunk: Chunk<'_>, _server_port: u16) -> bool {
    let _ = chunk;
    false
}

#[derive(Default)]
pub struct PostgresParser {}

impl Parser for PostgresParser {
    fn protocol(&self) -> Protocol {
        Protocol::Postgresql
    }
    fn feed(&mut self, _chunk: Chunk<'_>, _out: &mut Vec<ParseEvent>) {}
}
