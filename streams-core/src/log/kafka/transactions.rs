//! Transactions: one transactional producer per open transaction (`transactional.id` =
//! `<prefix>-<slot>`, reused after a commit), for exactly-once.

use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashMap;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;

use super::produce::DeliveryProducer;
use super::KafkaLog;
use crate::error::{Error, Result};
use crate::log::TxnId;

/// A transactional producer and the `transactional.id` slot it uses.
pub(super) struct TxnProducer {
    pub(super) producer: DeliveryProducer,
    pub(super) slot: usize,
}

#[derive(Default)]
pub(super) struct Transactions {
    pub(super) next_id: u64,
    pub(super) next_slot: usize,
    pub(super) open: HashMap<u64, Arc<TxnProducer>>,
    /// Producers whose last transaction committed; their `init_transactions` is done.
    pub(super) idle: Vec<TxnProducer>,
}

/// An error of the transactional path, saying what the broker must support.
pub(super) fn txn_error(operation: &str, transactional_id: &str, e: &KafkaError) -> Error {
    Error::Kafka {
        operation: format!("{operation} (transactional.id {transactional_id})"),
        topic: None,
        partition: None,
        reason: format!(
            "{e}. Exactly-once needs a broker that implements Kafka transactions \
             (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn)"
        ),
        retriable: false,
    }
}

/// The shortest `transaction.timeout.ms` of the log's transactional producers.
const TXN_TIMEOUT: Duration = Duration::from_secs(10);

impl KafkaLog {
    /// Opens a transactional producer (or takes an idle one) and begins a transaction on it.
    pub(super) fn txn_producer(&self) -> Result<TxnProducer> {
        let idle = self.txns.lock().idle.pop();
        let txn = match idle {
            Some(p) => p,
            None => {
                let slot = {
                    let mut txns = self.txns.lock();
                    txns.next_slot += 1;
                    txns.next_slot - 1
                };
                let id = format!("{}-{slot}", self.config.transactional_id_prefix);
                // As Kafka Streams does (10 s), a transaction left open by a crashed process
                // is aborted by the broker soon, not after librdkafka's minute, so that a
                // successor with other transactional ids (whose reads of committed offsets
                // wait for it) is not held up; never below the timeout its appends wait for.
                let txn_timeout = TXN_TIMEOUT.max(self.config.timeout).as_millis().to_string();
                let producer = Self::new_producer(
                    &self.config,
                    (&self.faults, &self.stats),
                    &[
                        ("transactional.id", &id),
                        ("transaction.timeout.ms", &txn_timeout),
                    ],
                )
                .map_err(|e| txn_error("create the transactional producer", &id, &e))?;
                producer
                    .init_transactions(self.config.timeout)
                    .map_err(|e| txn_error("initialise transactions", &id, &e))?;
                TxnProducer { producer, slot }
            }
        };
        txn.producer
            .begin_transaction()
            .map_err(|e| txn_error("begin a transaction", &self.txn_name(&txn), &e))?;
        Ok(txn)
    }

    pub(super) fn txn_name(&self, txn: &TxnProducer) -> String {
        format!("{}-{}", self.config.transactional_id_prefix, txn.slot)
    }

    pub(super) fn open_txn(&self, txn: TxnId) -> Result<Arc<TxnProducer>> {
        self.txns
            .lock()
            .open
            .get(&txn.0)
            .cloned()
            .ok_or_else(|| Error::Transaction {
                txn_id: txn.0,
                reason: "not open (committed, aborted or never begun)".into(),
            })
    }

    /// Removes an open transaction; its producer comes back once no append uses it.
    pub(super) fn close_txn(&self, txn: TxnId) -> Result<TxnProducer> {
        let producer = self
            .txns
            .lock()
            .open
            .remove(&txn.0)
            .ok_or_else(|| Error::Transaction {
                txn_id: txn.0,
                reason: "not open (committed, aborted or never begun)".into(),
            })?;
        Arc::try_unwrap(producer).map_err(|_| Error::Transaction {
            txn_id: txn.0,
            reason: "ended while an append to it was still running".into(),
        })
    }
}
