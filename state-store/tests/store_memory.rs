//! RocksDB memory stays within the application-wide bound.
//!
//! This file holds a single test so it runs alone in its own process: it reads the process's
//! resident set size (`VmRSS` in `/proc/self/status`), which other tests would disturb.
#![allow(clippy::unwrap_used)]

use state_store::{KeyValueStore, RocksDbMemory, StoreBuilder};
use tempfile::TempDir;

const MIB: usize = 1 << 20;
/// Block cache + memtables of all stores together.
const BUDGET: usize = 16 * MIB;
/// What RocksDB and the allocator use outside the budget: per-instance structures (table
/// readers' metadata, version sets, arenas not yet returned), thread stacks of the background
/// pool and allocator fragmentation. Measured at well under this on Linux/glibc.
const OVERHEAD: usize = 48 * MIB;
const STORES: usize = 4;
/// Data written per store: 4 × 48 MiB, twelve times the budget.
const PER_STORE: usize = 48 * MIB;
const VALUE: usize = 1024;

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Incompressible bytes, so LZ4 cannot shrink the data below the budget.
struct XorShift(u64);
impl XorShift {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

#[test]
fn rss_stays_within_budget_plus_overhead() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("no /proc: RSS cannot be measured here");
        return;
    }
    let d = TempDir::new().unwrap();
    let memory = RocksDbMemory::new(BUDGET, BUDGET / 4);
    let mut stores: Vec<Box<dyn KeyValueStore>> = (0..STORES)
        .map(|i| {
            StoreBuilder::key_value(format!("s{i}"))
                .persistent(d.path().join(format!("s{i}")), &memory)
                .build()
                .unwrap()
        })
        .collect();
    let baseline = rss_bytes();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut value = vec![0u8; VALUE];
    let n = PER_STORE / VALUE;
    let mut peak = baseline;
    for i in 0..n {
        for s in stores.iter_mut() {
            rng.fill(&mut value);
            s.put(&(i as u64).to_be_bytes(), &value).unwrap();
        }
        if i % 4096 == 0 {
            peak = peak.max(rss_bytes());
        }
    }
    // Reads over everything pull blocks through the shared cache.
    for round in 0..2 {
        for s in stores.iter() {
            for i in (0..n).step_by(7 + round) {
                assert!(s.get(&(i as u64).to_be_bytes()).unwrap().is_some());
            }
            peak = peak.max(rss_bytes());
        }
    }
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "wrote {} MiB into {STORES} stores; budget {} MiB; RSS baseline {} MiB, peak growth {} MiB; cache usage {} MiB",
        STORES * PER_STORE / MIB,
        BUDGET / MIB,
        baseline / MIB,
        growth / MIB,
        memory.usage_bytes() / MIB
    );
    assert!(
        memory.usage_bytes() <= BUDGET + BUDGET / 4,
        "cache usage {} over budget",
        memory.usage_bytes()
    );
    assert!(
        growth <= BUDGET + OVERHEAD,
        "RSS grew by {} MiB, more than the {} MiB budget + {} MiB overhead",
        growth / MIB,
        BUDGET / MIB,
        OVERHEAD / MIB
    );
    for s in stores.iter_mut() {
        s.close().unwrap();
    }
}
