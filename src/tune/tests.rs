//! The tuner on fake candidates, on the CPU: fast, slow, failing, wrong,
//! all failing, ties, the finalists' round and the full rounds.

use std::cell::RefCell;
use std::rc::Rc;

use super::{Call, Outcome, Rounds, TunableSet};

/// Every call the fake candidates were asked for, in order.
type Log = Rc<RefCell<Vec<(&'static str, Call)>>>;

/// A fake candidate: its samples in turn (the last one again when they run
/// out), `Err` where a sample or a warm-up is an error; every call logged.
fn fake(
    name: &'static str,
    script: Vec<Result<f64, String>>,
    log: &Log,
) -> impl FnMut(Call) -> Result<f64, String> {
    let log = log.clone();
    let mut at = 0;
    move |call| {
        log.borrow_mut().push((name, call));
        let r = script[at.min(script.len() - 1)].clone();
        at += 1;
        r
    }
}

fn times(t: &[f64]) -> Vec<Result<f64, String>> {
    t.iter().map(|&v| Ok(v)).collect()
}

/// A set of `rounds` with each `(name, script)` added in order, and the
/// log of its candidates' calls.
fn set<'a>(
    rounds: Rounds,
    cands: Vec<(&'static str, Vec<Result<f64, String>>)>,
) -> (TunableSet<'a, &'static str, String>, Log) {
    let log = Log::default();
    let mut s = TunableSet::new(rounds);
    for (name, script) in cands {
        s.add(name, fake(name, script, &log));
    }
    (s, log)
}

fn outcome<'s>(s: &'s TunableSet<'_, &'static str, String>, k: &str) -> &'s Outcome<&'static str> {
    s.outcomes().find(|o| o.key == k).unwrap()
}

fn no_rounds() -> Rounds {
    samples(1)
}

/// One warm-up, `samples` samples, no finalists' round.
fn samples(samples: usize) -> Rounds {
    Rounds {
        warmups: 1,
        samples,
        finalists: None,
    }
}

#[test]
fn the_fast_candidate_wins_over_the_slow_one_on_its_fastest_sample() {
    // Warm-up first (its time discarded), then three samples each.
    let (s, log) = set(
        samples(3),
        vec![
            ("slow", times(&[0.1, 5.0, 4.0, 6.0])),
            ("fast", times(&[100.0, 3.0, 9.0, 3.5])),
        ],
    );
    assert_eq!(s.best(), Some(&"fast"));
    let fast = outcome(&s, "fast");
    assert_eq!(fast.samples, vec![3.0, 9.0, 3.5]);
    assert_eq!(fast.score(), Some(3.0));
    assert_eq!(fast.median(), Some(3.5));
    assert_eq!(outcome(&s, "slow").score(), Some(4.0));
    assert_eq!(outcome(&s, "slow").median(), Some(5.0));
    let calls: Vec<Call> = log.borrow().iter().map(|c| c.1).collect();
    let one = [Call::WarmUp, Call::Sample, Call::Sample, Call::Sample];
    assert_eq!(calls, [one, one].concat());
    assert_eq!(log.borrow()[0].0, "slow", "measured in the order added");
}

#[test]
fn a_failing_candidate_keeps_its_error_and_no_sample_and_is_never_chosen() {
    let (s, log) = set(
        samples(3),
        vec![
            ("refused", vec![Err("the driver refuses it".into())]),
            // Its second sample fails: the first does not count either.
            (
                "flaky",
                vec![Ok(1.0), Ok(0.5), Err("lost the device".into())],
            ),
            ("slow", times(&[1.0, 8.0])),
        ],
    );
    assert_eq!(s.best(), Some(&"slow"));
    let refused = outcome(&s, "refused");
    assert_eq!(refused.error.as_deref(), Some("the driver refuses it"));
    assert!(refused.samples.is_empty() && refused.score().is_none());
    assert!(refused.median().is_none());
    let flaky = outcome(&s, "flaky");
    assert_eq!(flaky.error.as_deref(), Some("lost the device"));
    assert!(flaky.samples.is_empty());
    // A failed warm-up stops the candidate: no sample is asked for.
    let refused_calls = log.borrow().iter().filter(|c| c.0 == "refused").count();
    assert_eq!(refused_calls, 1);
}

#[test]
fn when_every_candidate_fails_there_is_no_best() {
    let (mut s, log) = set(
        Rounds::QUICK,
        vec![("a", vec![Err("no".into())]), ("b", vec![Err("no".into())])],
    );
    s.finalists();
    s.check(|_| Ok(None));
    assert_eq!(s.best(), None);
    for o in s.outcomes() {
        assert!(
            !o.checked,
            "{}: a candidate that did not run is not checked",
            o.key
        );
        assert!(o.error.is_some());
    }
    assert_eq!(log.borrow().len(), 2, "only the two failed warm-ups");
}

#[test]
fn a_wrong_candidate_is_rejected_with_its_reason_and_never_chosen() {
    // Each candidate's "results", held against the reference candidate's.
    let results = |k: &str| -> Result<Vec<f64>, String> {
        match k {
            "reference" | "right" => Ok(vec![1.0, 2.0]),
            "wrong" => Ok(vec![1.0, 2.5]),
            _ => Err(format!("{k} cannot be read back")),
        }
    };
    let expected = results("reference").unwrap();
    let (mut s, _) = set(
        no_rounds(),
        vec![
            ("reference", times(&[9.0])),
            ("wrong", times(&[1.0])),
            ("unreadable", times(&[2.0])),
            ("right", times(&[3.0])),
            ("broken", vec![Err("refused".into())]),
        ],
    );
    assert_eq!(s.best(), Some(&"wrong"), "the fastest, before the check");
    let mut asked = Vec::new();
    s.check(|k| {
        asked.push(*k);
        let got = results(k)?;
        Ok((got != expected).then(|| format!("{got:?} is not {expected:?}")))
    });
    assert_eq!(asked, ["reference", "wrong", "unreadable", "right"]);
    assert_eq!(s.best(), Some(&"right"));
    let wrong = outcome(&s, "wrong");
    assert!(wrong.checked);
    assert_eq!(
        wrong.rejected.as_deref(),
        Some("[1.0, 2.5] is not [1.0, 2.0]")
    );
    assert_eq!(wrong.score(), Some(1.0), "it ran: its time stays");
    assert_eq!(wrong.eligible(), None);
    // One whose check fails: an error, no score, its samples kept.
    let unreadable = outcome(&s, "unreadable");
    assert_eq!(
        unreadable.error.as_deref(),
        Some("checking its results: unreadable cannot be read back")
    );
    assert_eq!((unreadable.score(), unreadable.median()), (None, Some(2.0)));
    assert!(unreadable.rejected.is_none());
    let right = outcome(&s, "right");
    assert!(right.checked && right.rejected.is_none() && right.error.is_none());
    assert!(!outcome(&s, "broken").checked);
}

#[test]
fn when_every_candidate_that_ran_is_wrong_there_is_no_best() {
    let (mut s, _) = set(
        Rounds::QUICK,
        vec![("a", times(&[1.0])), ("b", times(&[1.0]))],
    );
    s.check(|k| Ok(Some(format!("{k} is wrong"))));
    assert_eq!(s.best(), None);
}

#[test]
fn equal_scores_are_decided_by_the_order_of_the_candidates() {
    let cands = |first, second| vec![(first, times(&[7.0, 2.0])), (second, times(&[1.0, 2.0]))];
    let (s, _) = set(no_rounds(), cands("a", "b"));
    assert_eq!(s.best(), Some(&"a"));
    let (s, _) = set(no_rounds(), cands("b", "a"));
    assert_eq!(s.best(), Some(&"b"));
    // After a rejection, the next in order.
    let (mut s, _) = set(
        no_rounds(),
        vec![
            ("x", times(&[0.0, 2.0])),
            ("y", times(&[0.0, 2.0])),
            ("z", times(&[0.0, 2.0])),
        ],
    );
    s.check(|k| Ok((*k == "x").then(|| "wrong".to_string())));
    assert_eq!(s.best(), Some(&"y"));
}

#[test]
fn quick_rounds_sample_the_finalists_within_20_percent_once_more() {
    let (mut s, log) = set(
        Rounds::QUICK,
        vec![
            ("best", times(&[0.0, 10.0, 9.0])),
            ("close", times(&[0.0, 11.9, 8.0])),
            ("far", times(&[0.0, 12.5, 1.0])),
            ("failed", vec![Err("refused".into())]),
        ],
    );
    for o in s.outcomes().filter(|o| o.error.is_none()) {
        assert_eq!(o.samples.len(), 1, "{}: one sample in quick mode", o.key);
    }
    assert_eq!(s.best(), Some(&"best"));
    log.borrow_mut().clear();
    s.finalists();
    // Only those within 20% (11.9 <= 10 * 1.2, not 12.5), one sample each,
    // no warm-up; the second round can change the winner.
    assert_eq!(
        *log.borrow(),
        [("best", Call::Sample), ("close", Call::Sample)]
    );
    assert_eq!(outcome(&s, "best").samples, vec![10.0, 9.0]);
    assert_eq!(outcome(&s, "close").samples, vec![11.9, 8.0]);
    assert_eq!(outcome(&s, "close").median(), Some(9.95));
    assert_eq!(outcome(&s, "far").samples, vec![12.5]);
    assert_eq!(s.best(), Some(&"close"));
}

#[test]
fn an_error_in_the_finalists_round_leaves_the_samples_as_they_were() {
    let (mut s, _) = set(
        Rounds::QUICK,
        vec![
            ("a", vec![Ok(0.0), Ok(2.0), Err("lost".into())]),
            ("b", times(&[0.0, 2.2, 2.1])),
        ],
    );
    s.finalists();
    let a = outcome(&s, "a");
    assert_eq!((a.samples.clone(), a.error.clone()), (vec![2.0], None));
    assert_eq!(outcome(&s, "b").samples, vec![2.2, 2.1]);
    assert_eq!(s.best(), Some(&"a"));
}

#[test]
fn full_rounds_take_three_samples_each_and_no_finalists_round() {
    let (mut s, log) = set(
        Rounds::FULL,
        vec![
            ("a", times(&[0.0, 3.0, 2.0, 4.0])),
            ("b", times(&[0.0, 2.5])),
        ],
    );
    let n = log.borrow().len();
    assert_eq!(n, 8, "a warm-up and three samples each");
    s.finalists();
    assert_eq!(log.borrow().len(), n, "no second round");
    assert_eq!(outcome(&s, "a").samples, vec![3.0, 2.0, 4.0]);
    assert_eq!(outcome(&s, "b").samples, vec![2.5, 2.5, 2.5]);
    assert_eq!(s.best(), Some(&"a"));
}

#[test]
fn a_name_is_measured_once_and_an_outcome_measured_elsewhere_is_reused() {
    let (mut s, log) = set(Rounds::QUICK, vec![("a", times(&[0.0, 5.0]))]);
    s.add("a", fake("a again", times(&[1.0]), &log));
    assert_eq!(s.outcomes().count(), 1);
    assert!(log.borrow().iter().all(|c| c.0 == "a"), "not run again");
    // From another round: not run when added, but in the later rounds.
    let earlier = Outcome {
        samples: vec![4.5],
        ..Outcome::new("b")
    };
    s.add_measured(earlier.clone(), fake("b", times(&[4.0]), &log));
    s.add_measured(earlier, fake("b twice", times(&[0.1]), &log));
    assert_eq!(s.outcomes().count(), 2);
    assert!(s.contains(&"b") && s.outcome(&"b").is_some());
    assert!(log.borrow().iter().all(|c| c.0 == "a"));
    assert_eq!(s.best(), Some(&"b"));
    log.borrow_mut().clear();
    s.finalists();
    assert_eq!(*log.borrow(), [("a", Call::Sample), ("b", Call::Sample)]);
    assert_eq!(s.outcome(&"b").unwrap().samples, vec![4.5, 4.0]);
}
