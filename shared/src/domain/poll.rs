//! The wait loop's schedule. Waiting is the state machine's job (a Wait/Choice loop, no Lambda
//! sleeps); the status steps compute when to look again: intervals that double from
//! `O11Y_WAIT_FIRST_SECONDS` (default 5) up to `O11Y_WAIT_MAX_SECONDS` (default 60), within a
//! total of `O11Y_AMP_WAIT_TOTAL_SECONDS` (default 900) or `O11Y_GRAFANA_WAIT_TOTAL_SECONDS`
//! (default 1800), after which the step fails with `ResourceFailedError`.

use crate::domain::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The wait loop's progress: growing intervals, bounded total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Poll {
    /// Status checks done so far.
    pub attempt: u32,
    /// Seconds to wait before the next check.
    pub wait_seconds: u64,
    /// Seconds waited so far, including `wait_seconds`.
    pub waited_seconds: u64,
}

/// Which workspace is being waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Amp,
    Grafana,
}

/// The schedule, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    pub first_seconds: u64,
    pub max_seconds: u64,
    pub total_seconds: u64,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

impl PollPolicy {
    /// The schedule for `resource`, from the environment or the defaults.
    pub fn from_env(resource: Resource) -> Self {
        let (var, default_total) = match resource {
            Resource::Amp => ("O11Y_AMP_WAIT_TOTAL_SECONDS", 900),
            Resource::Grafana => ("O11Y_GRAFANA_WAIT_TOTAL_SECONDS", 1800),
        };
        Self {
            first_seconds: env_u64("O11Y_WAIT_FIRST_SECONDS").unwrap_or(5),
            max_seconds: env_u64("O11Y_WAIT_MAX_SECONDS").unwrap_or(60).max(1),
            total_seconds: env_u64(var).unwrap_or(default_total),
        }
    }

    /// The next poll after `prev` (`None`: the first wait). Fails once the total is spent.
    pub fn next(&self, prev: Option<Poll>, what: &str, status: &str) -> Result<Poll> {
        let (attempt, waited) = prev.map(|p| (p.attempt + 1, p.waited_seconds)).unwrap_or((0, 0));
        if waited >= self.total_seconds && attempt > 0 {
            return Err(Error::ResourceFailed(format!(
                "{what} did not become ACTIVE within {} seconds (status {status}); run again to keep waiting",
                self.total_seconds
            )));
        }
        let grown = self.first_seconds.saturating_mul(1u64 << attempt.min(20));
        let wait = grown.min(self.max_seconds).min(self.total_seconds.saturating_sub(waited).max(1));
        Ok(Poll { attempt, wait_seconds: wait, waited_seconds: waited + wait })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_grow_then_cap_and_the_total_is_bounded() {
        let p = PollPolicy { first_seconds: 5, max_seconds: 60, total_seconds: 200 };
        let mut prev = None;
        let mut waits = Vec::new();
        loop {
            match p.next(prev, "x", "CREATING") {
                Ok(n) => {
                    waits.push(n.wait_seconds);
                    prev = Some(n);
                }
                Err(e) => {
                    assert_eq!(e.name(), "ResourceFailedError");
                    assert!(e.to_string().contains("200 seconds"), "{e}");
                    break;
                }
            }
        }
        assert_eq!(waits, vec![5, 10, 20, 40, 60, 60, 5]);
        assert_eq!(waits.iter().sum::<u64>(), 200);
    }
}
