//! The wait loop's schedule. Waiting is the state machine's job (a Wait/Choice loop, no Lambda
//! sleeps); the status steps compute when to look again. Until the resource's expected duration
//! (`O11Y_AMP_EXPECTED_SECONDS`, default 60; `O11Y_GRAFANA_EXPECTED_SECONDS`, default 300) the
//! intervals double from `O11Y_WAIT_FIRST_SECONDS` (default 5) up to `O11Y_WAIT_MAX_SECONDS`
//! (default 60), never past the expected mark; from there on, every `O11Y_WAIT_NEAR_SECONDS`
//! (default 2), so that a workspace that becomes ACTIVE at or after its usual time is seen within
//! that many seconds (earlier, within the interval then in use). All within a total of
//! `O11Y_AMP_WAIT_TOTAL_SECONDS` (default 900) or `O11Y_GRAFANA_WAIT_TOTAL_SECONDS` (default
//! 1800), after which the step fails with `ResourceFailedError`. [`PollPolicy::polls`] bounds the
//! loop's length, hence its share of the execution history's 25,000 events.

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
    /// When the wait began (seconds since the epoch): see [`PollPolicy::next_at`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
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
    /// The first interval (doubling from there).
    pub first_seconds: u64,
    /// The longest interval.
    pub max_seconds: u64,
    /// The wait budget: the step fails once it is spent.
    pub total_seconds: u64,
    /// How long the resource usually takes: the doubling intervals stop at this mark.
    pub expected_seconds: u64,
    /// The interval once the expected duration has passed.
    pub near_seconds: u64,
}

/// History events one turn of a wait loop adds (Wait: entered, exited; the status Task:
/// entered, scheduled, started, succeeded, exited; the Choice: entered, exited).
pub const EVENTS_PER_POLL: u64 = 9;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

impl PollPolicy {
    /// The schedule for `resource`, from the environment or the defaults.
    pub fn from_env(resource: Resource) -> Self {
        let (var, default_total, expected_var, default_expected) = match resource {
            Resource::Amp => ("O11Y_AMP_WAIT_TOTAL_SECONDS", 900, "O11Y_AMP_EXPECTED_SECONDS", 60),
            Resource::Grafana => ("O11Y_GRAFANA_WAIT_TOTAL_SECONDS", 1800, "O11Y_GRAFANA_EXPECTED_SECONDS", 300),
        };
        Self {
            first_seconds: env_u64("O11Y_WAIT_FIRST_SECONDS").unwrap_or(5),
            max_seconds: env_u64("O11Y_WAIT_MAX_SECONDS").unwrap_or(60).max(1),
            total_seconds: env_u64(var).unwrap_or(default_total),
            expected_seconds: env_u64(expected_var).unwrap_or(default_expected),
            near_seconds: env_u64("O11Y_WAIT_NEAR_SECONDS").unwrap_or(2).max(1),
        }
    }

    /// The longest the loop can run, in polls (the step fails after the last): a bound on the
    /// history events it adds ([`EVENTS_PER_POLL`] each).
    pub fn polls(&self) -> u64 {
        let mut prev = None;
        let mut n = 0;
        while let Ok(p) = self.next(prev, "", "") {
            n += 1;
            prev = Some(p);
        }
        n
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
        let wait = if waited < self.expected_seconds {
            let grown = self.first_seconds.max(1).saturating_mul(1u64 << attempt.min(20));
            grown.min(self.max_seconds).min(self.expected_seconds - waited)
        } else {
            self.near_seconds.min(self.max_seconds)
        };
        let wait = wait.min(self.total_seconds.saturating_sub(waited)).max(1);
        let started_at = prev.and_then(|p| p.started_at);
        Ok(Poll { attempt, wait_seconds: wait, waited_seconds: waited + wait, started_at })
    }

    /// [`PollPolicy::next`] on the clock, `now` in seconds since the epoch: the first poll
    /// records when the wait began, and a later one counts the time since then, not only the
    /// waits before it. The state machine starts both workspaces before it waits for either, so
    /// the Grafana loop's first check comes after the data path's steps: its schedule (the
    /// expected mark above all) is still measured from the workspace's creation.
    pub fn next_at(&self, prev: Option<Poll>, now: u64, what: &str, status: &str) -> Result<Poll> {
        let started = prev.and_then(|p| p.started_at).unwrap_or(now);
        let elapsed = now.saturating_sub(started);
        let prev = prev.map(|p| Poll { waited_seconds: p.waited_seconds.max(elapsed), started_at: Some(started), ..p });
        let mut next = self.next(prev, what, status)?;
        next.started_at = Some(started);
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_the_clock_the_schedule_counts_from_the_start_not_from_the_waits() {
        let p = PollPolicy { total_seconds: 1_000, ..policy(300) };
        let first = p.next_at(None, 1_000, "x", "CREATING").unwrap();
        assert_eq!(first.started_at, Some(1_000));
        assert_eq!(first.wait_seconds, 5);
        // The loop comes back 290 s after the start (other steps ran first): 10 s before the
        // expected mark, the next check is at the mark, not 10 s (the doubling) after a 5 s wait.
        let late = p.next_at(Some(first), 1_290, "x", "CREATING").unwrap();
        assert_eq!(late.started_at, Some(1_000));
        assert_eq!(late.waited_seconds, 300, "{late:?}");
        assert_eq!(late.wait_seconds, 10);
        // Past the mark: every near_seconds.
        let near = p.next_at(Some(late), 1_301, "x", "CREATING").unwrap();
        assert_eq!(near.wait_seconds, 2);
        assert_eq!(near.waited_seconds, 303);
        // A clock that has not moved (or went back) counts the waits, as `next` does.
        let same = p.next_at(Some(first), 1_000, "x", "CREATING").unwrap();
        assert_eq!(same, Poll { started_at: Some(1_000), ..p.next(Some(first), "x", "CREATING").unwrap() });
        // The budget is spent on the clock too.
        let over = p.next_at(Some(first), 1_000 + 1_000, "x", "CREATING");
        assert!(over.is_err(), "{over:?}");
    }

    fn policy(expected_seconds: u64) -> PollPolicy {
        PollPolicy { first_seconds: 5, max_seconds: 60, total_seconds: 200, expected_seconds, near_seconds: 2 }
    }

    /// The times (seconds after the first wait began) at which the status is checked.
    fn checks(p: &PollPolicy) -> Vec<u64> {
        let mut prev = None;
        let mut at = Vec::new();
        while let Ok(n) = p.next(prev, "x", "CREATING") {
            at.push(n.waited_seconds);
            prev = Some(n);
        }
        at
    }

    #[test]
    fn intervals_grow_then_cap_and_the_total_is_bounded() {
        let p = policy(1000);
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

    #[test]
    fn the_doubling_stops_at_the_expected_mark_then_checks_come_every_near_interval() {
        let at = checks(&policy(60));
        assert_eq!(&at[..5], &[5, 15, 35, 60, 62], "{at:?}");
        assert_eq!(*at.last().unwrap_or(&0), 200);
        assert!(at.windows(2).skip(3).all(|w| w[1] - w[0] == 2), "{at:?}");
    }

    #[test]
    fn a_workspace_ready_at_any_second_is_seen_within_the_bound_of_its_time() {
        for expected in [0, 7, 60, 150, 300] {
            let p = policy(expected);
            let at = checks(&p);
            for ready in 0..=p.total_seconds {
                let seen = at.iter().copied().find(|&t| t >= ready).unwrap_or(u64::MAX);
                let bound = if ready >= expected { p.near_seconds } else { p.max_seconds };
                assert!(seen - ready <= bound, "expected {expected}, ready at {ready}: seen at {seen} ({at:?})");
            }
        }
    }

    #[test]
    fn the_default_loops_fit_the_history_and_the_machine_timeout() {
        let amp =
            PollPolicy { first_seconds: 5, max_seconds: 60, total_seconds: 900, expected_seconds: 60, near_seconds: 2 };
        let grafana = PollPolicy { total_seconds: 1800, expected_seconds: 300, ..amp };
        let events = (amp.polls() + grafana.polls()) * EVENTS_PER_POLL;
        // the rest of an apply is well under 200 events; a delete waits for Grafana only
        assert!(events + 200 < 25_000, "{events} events");
        assert!(amp.total_seconds + grafana.total_seconds < 3_000, "within the machine's TimeoutSeconds");
        assert_eq!((amp.polls(), grafana.polls()), (4 + (900 - 60) / 2, 8 + (1800 - 300) / 2));
    }
}
