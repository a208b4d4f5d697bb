//! Unit tests of `registration.rs`: specs, stats, stream states and queued executions.

use super::*;

fn spec(prefix: &str) -> RegistrationSpec {
    let mut s = RegistrationSpec::from_value(&Value::Array(vec![])).unwrap();
    s.prefix = prefix.into();
    s
}

#[test]
fn prefix_is_exact_or_trailing_star() {
    assert!(prefix_matches("*", b"anything"));
    assert!(prefix_matches("user:*", b"user:1"));
    assert!(!prefix_matches("user:*", b"admin:1"));
    assert!(prefix_matches("user", b"user"));
    assert!(!prefix_matches("user", b"user:1"), "no star: exact key only");
    assert!(!prefix_matches("u?er*", b"user"), "not a glob");
}

#[test]
fn event_and_type_filters() {
    let mut s = spec("k*");
    s.event_types = Some(vec!["set".into(), "hset".into()]);
    s.key_types = Some(vec!["string".into()]);
    assert!(s.wants_event(b"k1", "SET"));
    assert!(!s.wants_event(b"k1", "del"));
    assert!(!s.wants_event(b"x1", "set"));
    assert!(s.wants_type("string"));
    assert!(!s.wants_type("hash"));
    s.reader = ReaderKind::Command;
    assert!(!s.wants_event(b"k1", "set"), "only KeysReader registrations see keyspace events");
}

#[test]
fn spec_round_trips_and_rejects_bad_modes() {
    let mut s = spec("a*");
    s.handle = 7;
    s.mode = Mode::Sync;
    s.event_types = Some(vec!["set".into()]);
    s.trigger = Some("t".into());
    s.hook = Some("hset".into());
    s.keyprefix = Some("user:".into());
    s.commands = Some(vec!["get".into()]);
    s.steps = vec![StepInfo { kind: "reader".into(), name: "KeysReader".into(), arg: "a*".into() }];
    s.desc = Some("d".into());
    assert_eq!(RegistrationSpec::from_value(&s.to_value()).unwrap(), s);
    let bad = Value::Array(vec![Value::bulk("mode"), Value::bulk("fast")]);
    assert_eq!(RegistrationSpec::from_value(&bad).unwrap_err(), "unknown execution mode");
    assert!(RegistrationSpec::from_value(&Value::Array(vec![Value::bulk("odd")])).is_err());
}

#[test]
fn stats_count_successes_failures_and_aborts() {
    let r = Registration::new("r-1".into(), crate::session::tests::session("s"), spec("*"));
    r.triggered();
    r.finished(&Outcome::default(), Duration::from_millis(4), false);
    r.triggered();
    r.finished(&Outcome::failed("boom"), Duration::from_millis(2), false);
    r.finished(&Outcome::default(), Duration::ZERO, true);
    let s = r.stats();
    assert_eq!((s.triggered, s.success, s.failures, s.aborted), (2, 1, 1, 1));
    assert_eq!((s.last_ms, s.total_ms), (0, 6));
    assert_eq!(s.last_error.as_deref(), Some("boom"));
    assert!((s.avg_ms() - 2.0).abs() < 1e-9);
    r.clear_stats();
    assert_eq!(r.stats(), Stats::default());
}

#[test]
fn a_stream_registration_forgets_its_last_error_after_a_good_batch_and_clears_its_lag() {
    let mut sp = spec("s");
    sp.reader = ReaderKind::Stream;
    let r = Registration::new("r-1".into(), crate::session::tests::session("s"), sp);
    r.finished(&Outcome::failed("boom"), Duration::ZERO, false);
    assert_eq!(r.stats().last_error.as_deref(), Some("boom"));
    r.finished(&Outcome::default(), Duration::ZERO, false);
    assert_eq!(r.stats().last_error, None, "the retry worked");
    {
        let mut st = locked(&r.stream);
        let at = std::time::Instant::now();
        assert_eq!(st.added_at(b"s", at), crate::stream_state::Next::Run);
        st.finished_at(b"s", false, OnFailed::Continue, at + Duration::from_millis(7));
        assert_eq!(st.lag(), (Duration::from_millis(7), Duration::from_millis(7)));
    }
    r.clear_stats();
    assert_eq!(locked(&r.stream).lag(), (Duration::ZERO, Duration::ZERO));
    let keys = Registration::new("r-2".into(), crate::session::tests::session("s"), spec("*"));
    keys.finished(&Outcome::failed("boom"), Duration::ZERO, false);
    keys.finished(&Outcome::default(), Duration::ZERO, false);
    assert_eq!(keys.stats().last_error.as_deref(), Some("boom"), "a KeysReader keeps it");
}
