//! Events of the sched module (sched.bpf.c): thread timelines and CPU
//! samples. Wire kinds 40-59.

use crate::json::JsonEvent;
use crate::model::Event;
use crate::wire::{DecodeError, Decoder};
use serde::{Deserialize, Serialize};

/// A scheduler or sampling event. (The sched module is being built; until it
/// emits events this type has no variants that can arrive.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SchedEvent {}

impl SchedEvent {
    pub fn kind_name(&self) -> &'static str {
        match *self {}
    }

    pub fn json_fields(&self, _j: &mut JsonEvent<'_>) {
        match *self {}
    }
}

pub fn decode(_buf: &[u8], kind: u32, _d: &Decoder) -> Result<SchedEvent, DecodeError> {
    Err(DecodeError::UnknownKind(kind))
}

pub fn encode(_ev: &Event, t: &SchedEvent, _mono: u64) -> Option<Vec<u8>> {
    match *t {}
}
