//! The verify stage the validator pipeline calls: bounded batches, a time budget per call, and
//! load shedding when the budget is exceeded (counted, never silent).

use crate::{AccelError, SigItem, Verifier};
use std::time::{Duration, Instant};

/// Limits of the verify stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageConfig {
    /// Largest batch handed to the verifier at once.
    pub batch_size_max: usize,
    /// Time allowed for one call of [`VerifyStage::process`]; items not started when it runs
    /// out are shed.
    pub budget: Duration,
}

/// What happened to one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The signature is valid.
    Valid,
    /// The signature is invalid.
    Invalid,
    /// Not verified: the stage ran out of time (the item is dropped and counted).
    Shed,
}

/// Counters of the stage since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageCounters {
    /// Batches handed to the verifier.
    pub batches: u64,
    /// Items verified valid.
    pub valid: u64,
    /// Items verified invalid.
    pub invalid: u64,
    /// Items shed for lack of time.
    pub shed: u64,
    /// Calls that ran over their budget.
    pub over_budget: u64,
}

/// The verify stage: a verifier with limits and counters.
pub struct VerifyStage {
    verifier: Box<dyn Verifier>,
    config: StageConfig,
    counters: StageCounters,
    verdicts: Vec<bool>,
}

impl VerifyStage {
    /// A stage; `batch_size_max` must be positive and the budget non-zero.
    pub fn new(verifier: Box<dyn Verifier>, config: StageConfig) -> Result<VerifyStage, AccelError> {
        if config.batch_size_max == 0 {
            return Err(AccelError::Config("batch_size_max must be at least 1".into()));
        }
        if config.budget.is_zero() {
            return Err(AccelError::Config("the time budget must be positive".into()));
        }
        Ok(VerifyStage { verifier, config, counters: StageCounters::default(), verdicts: Vec::new() })
    }

    /// Verifies `items` in batches of at most `batch_size_max`; once the time budget is spent,
    /// the remaining items are shed (the first batch always runs). `out` receives one outcome
    /// per item, in order.
    pub fn process(&mut self, items: &[SigItem<'_>], out: &mut Vec<Outcome>) {
        out.clear();
        let start = Instant::now();
        let mut over = false;
        for (i, chunk) in items.chunks(self.config.batch_size_max).enumerate() {
            // The first batch always runs, so the stage makes progress however small the
            // budget; later batches run only while time is left.
            if i > 0 && start.elapsed() >= self.config.budget {
                over = true;
                out.extend(std::iter::repeat_n(Outcome::Shed, chunk.len()));
                self.counters.shed = self.counters.shed.saturating_add(chunk.len() as u64);
                continue;
            }
            self.verifier.verify_into(chunk, &mut self.verdicts);
            self.counters.batches = self.counters.batches.saturating_add(1);
            for v in &self.verdicts {
                if *v {
                    self.counters.valid = self.counters.valid.saturating_add(1);
                    out.push(Outcome::Valid);
                } else {
                    self.counters.invalid = self.counters.invalid.saturating_add(1);
                    out.push(Outcome::Invalid);
                }
            }
        }
        if over || start.elapsed() > self.config.budget {
            self.counters.over_budget = self.counters.over_budget.saturating_add(1);
        }
    }

    /// Counters since the stage started.
    pub fn counters(&self) -> &StageCounters {
        &self.counters
    }

    /// The backend in use.
    pub fn backend(&self) -> crate::Backend {
        self.verifier.backend()
    }
}

impl std::fmt::Debug for VerifyStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyStage")
            .field("backend", &self.verifier.backend())
            .field("config", &self.config)
            .field("counters", &self.counters)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, OwnedSigItem, verifier};

    fn items(n: usize) -> Vec<OwnedSigItem> {
        (0..n)
            .map(|i| {
                let sk = ed25519_zebra::SigningKey::from([i as u8; 32]);
                let message = vec![i as u8; 10];
                let signature = sk.sign(&message).to_bytes();
                let public_key: [u8; 32] = ed25519_zebra::VerificationKey::from(&sk).into();
                OwnedSigItem { public_key, signature, message }
            })
            .collect()
    }

    #[test]
    fn verifies_in_bounded_batches_and_counts() {
        let owned = items(10);
        let list: Vec<SigItem<'_>> = owned.iter().map(|o| o.as_item()).collect();
        let cfg = StageConfig { batch_size_max: 3, budget: Duration::from_secs(10) };
        let mut stage = VerifyStage::new(verifier(Backend::Batch).unwrap(), cfg).unwrap();
        let mut out = Vec::new();
        stage.process(&list, &mut out);
        assert_eq!(out, vec![Outcome::Valid; 10]);
        assert_eq!(stage.counters().batches, 4);
        assert_eq!(stage.counters().valid, 10);
        assert_eq!(stage.counters().shed, 0);
    }

    #[test]
    fn sheds_and_counts_when_the_budget_is_spent() {
        let owned = items(64);
        let list: Vec<SigItem<'_>> = owned.iter().map(|o| o.as_item()).collect();
        // One nanosecond: the first batch runs, every later batch is shed.
        let cfg = StageConfig { batch_size_max: 8, budget: Duration::from_nanos(1) };
        let mut stage = VerifyStage::new(verifier(Backend::Scalar).unwrap(), cfg).unwrap();
        let mut out = Vec::new();
        stage.process(&list, &mut out);
        let shed = out.iter().filter(|o| **o == Outcome::Shed).count();
        assert_eq!(shed, 56);
        assert_eq!(&out[..8], &[Outcome::Valid; 8]);
        assert_eq!(stage.counters().shed as usize, shed);
        assert_eq!(stage.counters().over_budget, 1);
        assert_eq!(out.len(), 64);
        assert!(
            VerifyStage::new(
                verifier(Backend::Scalar).unwrap(),
                StageConfig { batch_size_max: 0, budget: Duration::from_secs(1) }
            )
            .is_err()
        );
    }
}
