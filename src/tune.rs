//! A generic tuner: named candidates, each a closure that runs one call and
//! says how long it took, measured in rounds and scored; no knowledge of
//! what the calls are (the GPU planner, `gpu::gru::planning`, builds its
//! candidates from plans; the tests here from fake ones).
//!
//! A [`TunableSet`] holds its candidates in the order they were added (the
//! order decides between equal scores: the first wins). Each candidate is
//! measured when it is added ([`TunableSet::add`]): its warm-up calls (off
//! the clock), then its samples; an error in any of them fails the
//! candidate, which keeps the error and no sample. Its score is its fastest
//! sample (interference only adds time). Then, on the candidates that ran:
//!
//! - [`finalists`](TunableSet::finalists): those within a ratio of the best
//!   score sampled once more (quick mode's second round);
//! - [`check`](TunableSet::check): each held against a reference (the
//!   closure's business); one that disagrees is rejected with the reason,
//!   and a rejected one is never [`best`](TunableSet::best).
//!
//! The pattern is CubeCL's `TunableSet` (`cubecl-runtime/src/tune/`) and its
//! tests on dummy kernels.

use std::fmt::Display;

/// What a candidate's closure is asked to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// An untimed call (building what the candidate needs); its time is
    /// discarded.
    WarmUp,
    /// A timed call: its time is a sample.
    Sample,
}

/// How much a tuning measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rounds {
    /// Untimed calls before a candidate's first sample.
    pub warmups: usize,
    /// Samples of each candidate when it is added.
    pub samples: usize,
    /// Where set, [`TunableSet::finalists`] samples once more each
    /// candidate whose score is within this ratio of the best.
    pub finalists: Option<f64>,
}

impl Rounds {
    /// The planner's quick mode: one warm-up and one sample each, those
    /// within 20% of the best once more.
    pub const QUICK: Rounds = Rounds {
        warmups: 1,
        samples: 1,
        finalists: Some(1.2),
    };
    /// The planner's full mode: one warm-up and three samples each.
    pub const FULL: Rounds = Rounds {
        warmups: 1,
        samples: 3,
        finalists: None,
    };
}

/// What was measured of one candidate.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Outcome<K> {
    /// The candidate's name.
    pub key: K,
    /// Its timed samples (none where it failed).
    pub samples: Vec<f64>,
    /// Why it could not run, or could not be checked.
    pub error: Option<String>,
    /// Whether its results were held against the reference.
    pub checked: bool,
    /// How its results disagreed with the reference's, where they did.
    pub rejected: Option<String>,
}

impl<K> Outcome<K> {
    fn new(key: K) -> Self {
        Outcome {
            key,
            samples: Vec::new(),
            error: None,
            checked: false,
            rejected: None,
        }
    }

    /// The score: the fastest sample, where the candidate ran without error.
    pub fn score(&self) -> Option<f64> {
        if self.error.is_some() {
            return None;
        }
        self.samples.iter().copied().min_by(f64::total_cmp)
    }

    /// The score of a candidate that may be chosen (ran, not rejected).
    pub fn eligible(&self) -> Option<f64> {
        self.score().filter(|_| self.rejected.is_none())
    }

    /// The median of the samples, where there are any.
    pub fn median(&self) -> Option<f64> {
        let mut s = self.samples.clone();
        if s.is_empty() {
            return None;
        }
        s.sort_by(f64::total_cmp);
        let n = s.len();
        Some(if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        })
    }
}

type Run<'a, E> = Box<dyn FnMut(Call) -> Result<f64, E> + 'a>;

/// An ordered set of named candidates and what was measured of each.
pub(crate) struct TunableSet<'a, K, E> {
    rounds: Rounds,
    entries: Vec<(Outcome<K>, Run<'a, E>)>,
}

impl<'a, K: PartialEq, E: Display> TunableSet<'a, K, E> {
    pub fn new(rounds: Rounds) -> Self {
        TunableSet {
            rounds,
            entries: Vec::new(),
        }
    }

    /// Whether a candidate of this name is in the set.
    pub fn contains(&self, key: &K) -> bool {
        self.entries.iter().any(|(o, _)| o.key == *key)
    }

    /// Adds a candidate and measures it now: its warm-ups, then its samples
    /// (an error in any of them: the error, and no sample). A name already
    /// in the set is not added again.
    pub fn add(&mut self, key: K, mut run: impl FnMut(Call) -> Result<f64, E> + 'a) {
        if self.contains(&key) {
            return;
        }
        let mut o = Outcome::new(key);
        let warm = (0..self.rounds.warmups).try_for_each(|_| run(Call::WarmUp).map(|_| ()));
        let samples = warm.and_then(|()| {
            (0..self.rounds.samples)
                .map(|_| run(Call::Sample))
                .collect::<Result<Vec<f64>, E>>()
        });
        match samples {
            Ok(s) => o.samples = s,
            Err(e) => o.error = Some(e.to_string()),
        }
        self.entries.push((o, Box::new(run)));
    }

    /// Adds a candidate measured elsewhere (in the same rounds), run by
    /// `run` in the later rounds; not added where its name is in the set.
    pub fn add_measured(
        &mut self,
        outcome: Outcome<K>,
        run: impl FnMut(Call) -> Result<f64, E> + 'a,
    ) {
        if !self.contains(&outcome.key) {
            self.entries.push((outcome, Box::new(run)));
        }
    }

    /// The name of the candidate with the best score that may be chosen
    /// (the first of equal ones), where one ran and was not rejected.
    pub fn best(&self) -> Option<&K> {
        self.entries
            .iter()
            .filter_map(|(o, _)| o.eligible().map(|s| (s, &o.key)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, k)| k)
    }

    /// The finalists' round, where the rounds have one: each candidate
    /// whose score is within the ratio of the best sampled once more (no
    /// warm-up; an error there leaves its samples as they were).
    pub fn finalists(&mut self) {
        let Some(ratio) = self.rounds.finalists else {
            return;
        };
        let best = self
            .entries
            .iter()
            .filter_map(|(o, _)| o.eligible())
            .min_by(f64::total_cmp);
        let Some(best) = best else { return };
        for (o, run) in self.entries.iter_mut() {
            if o.eligible().is_some_and(|s| s <= best * ratio) {
                if let Ok(s) = run(Call::Sample) {
                    o.samples.push(s);
                }
            }
        }
    }

    /// Holds every candidate that ran against the reference, in order:
    /// `disagreement` says how its results disagree (`Ok(None)`: they
    /// agree), and an error there fails the candidate.
    pub fn check(&mut self, mut disagreement: impl FnMut(&K) -> Result<Option<String>, E>) {
        for (o, _) in self.entries.iter_mut() {
            if o.score().is_none() {
                continue;
            }
            o.checked = true;
            match disagreement(&o.key) {
                Ok(why) => o.rejected = why,
                Err(e) => o.error = Some(format!("checking its results: {e}")),
            }
        }
    }

    /// What was measured of each candidate, in order.
    pub fn outcomes(&self) -> impl Iterator<Item = &Outcome<K>> {
        self.entries.iter().map(|(o, _)| o)
    }

    /// The outcome of the candidate of this name.
    pub fn outcome(&self, key: &K) -> Option<&Outcome<K>> {
        self.outcomes().find(|o| o.key == *key)
    }
}

#[cfg(test)]
mod tests;
