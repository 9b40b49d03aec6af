//! Cases ported from Kafka Streams' own tests: their inputs (facts, not code).

#[allow(unused_imports)]
use super::{Case, Input, Mode, Topo, WindowKind};

pub(crate) fn cases() -> Vec<Case> {
    Vec::new()
}
