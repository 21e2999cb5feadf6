//! The gate every call of the boundary passes: it counts calls and effects, fails a call before
//! it acts or loses the answer after it acted, as the schedule's faults say, and kills the process
//! after the effect the schedule names (every later call of that process hangs).

use super::*;

enum Gate {
    Go,
    Hang,
    Fail(FailMode),
}

impl World {
    pub(super) async fn enter(
        &self,
        what: &str,
        key: Option<&str>,
        effect: bool,
    ) -> Result<(), Failure> {
        let gate = {
            let mut s = self.state.lock().unwrap();
            if s.crashed {
                Gate::Hang
            } else {
                s.calls += 1;
                let call = s.calls;
                let mut faults = self.faults.lock().unwrap();
                let (faults, rng) = &mut *faults;
                let broken = key
                    .and_then(|k| faults.broken_reads.get_mut(k))
                    .filter(|n| **n > 0);
                let gate = if let Some(left) = broken {
                    *left -= 1;
                    Gate::Fail(FailMode::Before)
                } else if let Some(mode) = faults.fail_calls.get(&call) {
                    Gate::Fail(*mode)
                } else if faults.fail_per_mille > 0
                    && rng.below(1000) < u64::from(faults.fail_per_mille)
                {
                    Gate::Fail(if rng.below(2) == 0 {
                        FailMode::Before
                    } else {
                        FailMode::After
                    })
                } else {
                    Gate::Go
                };
                if let Gate::Fail(mode) = gate {
                    let line = format!(
                        "t={} call {call} {what}: injected failure ({mode:?})",
                        s.clock
                    );
                    s.trace.push(line);
                }
                gate
            }
        };
        match gate {
            Gate::Go => Ok(()),
            Gate::Hang => std::future::pending().await,
            Gate::Fail(FailMode::Before) => Err(injected(what)),
            // The effect acts, then its answer is lost: `effect` sees the mode through `lost`.
            Gate::Fail(FailMode::After) if effect => {
                Err(Failure::transient("sim_lost", what.to_string()))
            }
            Gate::Fail(FailMode::After) => Err(injected(what)),
        }
    }

    /// Passes the gate of an effect: `Ok(true)` to act and answer, `Ok(false)` to act and fail.
    pub(super) async fn gate_effect(&self, what: &str) -> Result<bool, Failure> {
        match self.enter(what, None, true).await {
            Ok(()) => Ok(true),
            Err(f) if f.kind == "sim_lost" => Ok(false),
            Err(f) => Err(f),
        }
    }

    /// Counts an effect that acted; kills the process when the schedule says so.
    pub(super) fn acted(&self, what: &str) {
        let mut s = self.state.lock().unwrap();
        s.effects += 1;
        let n = s.effects;
        let line = format!("t={} effect {n}: {what}", s.clock);
        s.trace.push(line);
        if self.faults.lock().unwrap().0.crash_after.contains(&n) {
            s.crashed = true;
            s.crashes += 1;
            let line = format!("t={} CRASH after effect {n}", s.clock);
            s.trace.push(line);
            self.crash.notify_one();
        }
    }

    pub(super) async fn effect<T>(
        &self,
        what: String,
        act: impl FnOnce(&mut State) -> T,
    ) -> Result<T, Failure> {
        let answer = self.gate_effect(&what).await?;
        let out = act(&mut self.state.lock().unwrap());
        self.acted(&what);
        if answer {
            Ok(out)
        } else {
            Err(injected(&what))
        }
    }
}

fn injected(what: &str) -> Failure {
    Failure::transient("sim_fault", format!("injected failure of {what}"))
}
