//! ARM's request budget: a token bucket per subscription and per kind of request
//! (azure-backup-api.md §12), answered with 429 + `Retry-After` when empty and advertised in
//! the `x-ms-ratelimit-remaining-subscription-*` headers on every answer.

use chrono::{DateTime, Utc};
use std::collections::HashMap;

use crate::settings::Throttling;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Reads,
    Writes,
    Deletes,
}

impl Kind {
    pub fn from_method(method: &str) -> Kind {
        match method {
            "GET" | "HEAD" => Kind::Reads,
            "DELETE" => Kind::Deletes,
            _ => Kind::Writes,
        }
    }
    pub fn header(self) -> &'static str {
        match self {
            Kind::Reads => "x-ms-ratelimit-remaining-subscription-reads",
            Kind::Writes => "x-ms-ratelimit-remaining-subscription-writes",
            Kind::Deletes => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: DateTime<Utc>,
}

/// The outcome of asking for one request's token.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Go ahead; this many tokens remain.
    Allowed { remaining: u64 },
    /// Throttled; retry after this many seconds.
    Throttled { retry_after_secs: u64 },
}

#[derive(Debug, Default)]
pub struct Throttle {
    buckets: HashMap<(String, Kind), Bucket>,
}

impl Throttle {
    pub fn take(&mut self, cfg: &Throttling, subscription: &str, kind: Kind, now: DateTime<Utc>) -> Decision {
        let (cap, rate) = match kind {
            Kind::Reads => (cfg.reads_capacity, cfg.reads_per_second),
            Kind::Writes => (cfg.writes_capacity, cfg.writes_per_second),
            Kind::Deletes => (cfg.deletes_capacity, cfg.deletes_per_second),
        };
        if !cfg.enabled {
            return Decision::Allowed { remaining: cap.max(0.0) as u64 };
        }
        let b = self.buckets.entry((subscription.to_ascii_lowercase(), kind)).or_insert(Bucket { tokens: cap, at: now });
        let elapsed = (now - b.at).num_milliseconds().max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * rate).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Decision::Allowed { remaining: b.tokens.floor() as u64 }
        } else {
            let wait = if rate > 0.0 { ((1.0 - b.tokens) / rate).ceil() as u64 } else { 3600 };
            Decision::Throttled { retry_after_secs: wait.max(1) }
        }
    }

    pub fn reset(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_refills() {
        let cfg = Throttling { reads_capacity: 2.0, reads_per_second: 1.0, ..Throttling::default() };
        let mut t = Throttle::default();
        let now = Utc::now();
        assert_eq!(t.take(&cfg, "s", Kind::Reads, now), Decision::Allowed { remaining: 1 });
        assert_eq!(t.take(&cfg, "S", Kind::Reads, now), Decision::Allowed { remaining: 0 });
        assert_eq!(t.take(&cfg, "s", Kind::Reads, now), Decision::Throttled { retry_after_secs: 1 });
        // Writes have their own bucket.
        assert!(matches!(t.take(&cfg, "s", Kind::Writes, now), Decision::Allowed { .. }));
        assert!(matches!(t.take(&cfg, "s", Kind::Reads, now + chrono::Duration::seconds(1)), Decision::Allowed { .. }));
    }
}
