//! What the simulator saw: counters per (operation, status) and an ordered, bounded request log.
//! Tests assert on these to prove a client made exactly the calls it needed.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub seq: u64,
    #[serde(serialize_with = "service_time")]
    pub at: chrono::DateTime<chrono::Utc>,
    pub method: String,
    /// Path and query as received (still percent-encoded).
    pub url: String,
    pub operation_id: &'static str,
    pub status: u16,
}

/// Timestamps are formatted when the log is read, not on the hot path.
fn service_time<S: serde::Serializer>(t: &chrono::DateTime<chrono::Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::names::timestamp(*t))
}

#[derive(Debug, Default)]
pub struct Recorder {
    seq: u64,
    log: VecDeque<RequestRecord>,
    counters: BTreeMap<(&'static str, u16), u64>,
}

impl Recorder {
    pub fn record(
        &mut self,
        capacity: usize,
        method: &str,
        url: &str,
        operation_id: &'static str,
        status: u16,
        at: chrono::DateTime<chrono::Utc>,
    ) {
        self.seq += 1;
        *self.counters.entry((operation_id, status)).or_default() += 1;
        if capacity == 0 {
            return;
        }
        while self.log.len() >= capacity {
            self.log.pop_front();
        }
        self.log.push_back(RequestRecord { seq: self.seq, at, method: method.to_string(), url: url.to_string(), operation_id, status });
    }

    /// Entries with `seq > since`.
    pub fn log_since(&self, since: u64) -> Vec<RequestRecord> {
        self.log.iter().filter(|r| r.seq > since).cloned().collect()
    }

    /// `{operationId: {status: count}}`.
    pub fn counters(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for ((op, status), n) in &self.counters {
            out.entry(op.to_string()).or_default().insert(status.to_string(), *n);
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
