//! A processor of the tests' own, written against the engine's API only: counts records per
//! key in a key-value store, forwards each new count, and on every punctuation forwards the
//! total under the key `*`.

use streams_core::{
    Downstream, Error, I64Serde, KvStoreRef, Processor, ProcessorContext, Rec, Result, Serde,
    SerdeError,
};

pub(crate) struct Counter {
    pub(crate) store: KvStoreRef,
    pub(crate) total: i64,
    pub(crate) down: Downstream<String, i64>,
}

fn serde_error(e: SerdeError) -> Error {
    Error::Config {
        key: "counts".into(),
        reason: e.to_string(),
    }
}

/// Decodes a count the way `Counter` stores it.
pub(crate) fn decode_count(bytes: &[u8]) -> Result<i64> {
    I64Serde.deserialize(bytes).map_err(serde_error)
}

impl Processor<String, String> for Counter {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, rec: Rec<String, String>) -> Result<()> {
        let old = self.store.borrow().get(rec.key.as_bytes())?;
        let new = old.map(|b| decode_count(&b)).transpose()?.unwrap_or(0) + 1;
        let bytes = I64Serde.serialize(&new).map_err(serde_error)?;
        self.store.borrow_mut().put(rec.key.as_bytes(), &bytes)?;
        self.total += 1;
        self.down
            .forward(ctx, Rec::new(rec.key, new, rec.timestamp))
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        _schedule: u32,
        timestamp: i64,
    ) -> Result<()> {
        self.down
            .forward(ctx, Rec::new("*".to_string(), self.total, timestamp))
    }
}
