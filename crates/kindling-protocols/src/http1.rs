//! PLACEHOLDER: being implemented (see the parser work split in docs/ARCHITECTURE.md).

use crate::{Chunk, ParseEvent, Parser, Protocol};

pub fn detect(chunk: Chunk<'_>) -> bool {
    let _ = chunk;
    false
}

#[derive(Default)]
pub struct Http1Parser {}

impl Parser for Http1Parser {
    fn protocol(&self) -> Protocol {
        Protocol::Http
    }
    fn feed(&mut self, _chunk: Chunk<'_>, _out: &mut Vec<ParseEvent>) {}
}
