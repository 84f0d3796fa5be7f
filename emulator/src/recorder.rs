//! What the simulator saw: counters per (operation, status) and an ordered, bounded request log.
//! Tests assert on these to prove a client made exactly the calls it needed.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub seq: u64,
    pub at: String,
    pub method: String,
    /// Path and query as received (still percent-encoded).
    pub url: String,
    pub operation_id: String,
    pub status: u16,
}

#[derive(Debug, Default)]
pub struct Recorder {
    seq: u64,
    log: VecDeque<RequestRecord>,
    counters: BTreeMap<(String, u16), u64>,
}

impl Recorder {
    pub fn record(&mut self, capacity: usize, method: &str, url: &str, operation_id: &str, status: u16, at: String) {
        self.seq += 1;
        *self.counters.entry((operation_id.to_string(), status)).or_default() += 1;
        if capacity == 0 {
            return;
        }
        while self.log.len() >= capacity {
            self.log.pop_front();
        }
        self.log.push_back(RequestRecord {
            seq: self.seq,
            at,
            method: method.to_string(),
            url: url.to_string(),
            operation_id: operation_id.to_string(),
            status,
        });
    }

    /// Entries with `seq > since`.
    pub fn log_since(&self, since: u64) -> Vec<RequestRecord> {
        self.log.iter().filter(|r| r.seq > since).cloned().collect()
    }

    /// `{operationId: {status: count}}`.
    pub fn counters(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((op, status), n) in &self.counters {
            out.entry(op.clone()).or_default().insert(status.to_string(), *n);
        }
        out
    }

    pub fn total(&self) -> u64 {
        self.seq
    }

    pub fn reset(&mut self) {
        *self = Recorder::default();
    }
}
