//! PLACEHOLDER: being implemented (see the parser work split in docs/ARCHITECTURE.md).

use crate::{Chunk, ParseEvent, Parser, Protocol};

pub fn detect(chunk: Chunk<'_>, _server_port: u16) -> bool {
    let _ = chunk;
    false
}

#[derive(Default)]
pub struct RedisParser {}

impl Parser for RedisParser {
    fn protocol(&self) -> Protocol {
        Protocol::Redis
    }
    fn feed(&mut self, _chunk: Chunk<'_>, _out: &mut Vec<ParseEvent>) {}
}
