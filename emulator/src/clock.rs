//! The simulator's notion of "now": wall-clock time plus an offset the control API can advance,
//! so a demo can skip the service's minutes-long waits without changing any timing.

use chrono::{DateTime, Duration, Utc};
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Move time forward (never backwards: completions already applied stay applied).
    pub fn advance(&self, by: Duration) {
        self.offset_ms.fetch_add(by.num_milliseconds().max(0), Ordering::Relaxed);
    }
}
