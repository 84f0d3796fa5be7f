//! Injected failures: 500s, 503s, dropped connections and added latency, decided by seeded
//! dice so a failing run can be replayed.

use crate::settings::Faults;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Error500,
    Error503,
    Drop,
}

#[derive(Debug)]
pub struct Dice {
    rng: fastrand::Rng,
}

impl Dice {
    pub fn new(seed: Option<u64>) -> Dice {
        Dice { rng: seed.map(fastrand::Rng::with_seed).unwrap_or_default() }
    }

    /// Roll for one request of the given operation.
    pub fn roll(&mut self, faults: &Faults, operation_id: &str) -> Fault {
        if !faults.only_operations.is_empty() && !faults.only_operations.iter().any(|o| o.eq_ignore_ascii_case(operation_id)) {
            return Fault::None;
        }
        let x = self.rng.f64();
        let mut edge = faults.drop_connection_rate.clamp(0.0, 1.0);
        if x < edge {
            return Fault::Drop;
        }
        edge += faults.error_500_rate.clamp(0.0, 1.0);
        if x < edge {
            return Fault::Error500;
        }
        edge += faults.error_503_rate.clamp(0.0, 1.0);
        if x < edge {
            return Fault::Error503;
        }
        Fault::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_honoured_and_scoped() {
        let f = Faults { error_500_rate: 0.5, only_operations: vec!["Backups_Trigger".into()], ..Faults::default() };
        let mut d = Dice::new(Some(7));
        let hits = (0..1000).filter(|_| d.roll(&f, "Backups_Trigger") == Fault::Error500).count();
        assert!((400..600).contains(&hits), "{hits}");
        assert!((0..100).all(|_| d.roll(&f, "JobDetails_Get") == Fault::None));
    }
}
