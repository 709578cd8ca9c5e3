//! Numbers from the command line that cannot wrap: a duration too long is
//! refused, never read as zero, and a minimum age reaching back before any
//! representable time keeps everything.

mod layout_support;

use std::time::Duration;

use layout_support::*;

#[test]
fn huge_min_age_is_refused_not_read_as_zero() {
    let mut b = LayoutBuilder::new();
    let orphan = b.orphan_blob("o");
    let root = b.root().to_str().unwrap().to_owned();
    for args in [
        vec!["gc", "-y", "--min-age", "200000000000000d", &root],
        vec!["gc", "-y", "--older-than", "200000000000000d", &root],
        vec!["gc", "-y", "--threads", "65535", &root],
        vec!["gc", "-y", "--delete-threads", "65535", &root],
    ] {
        let out = regsweep(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", describe(&out));
        assert_blob_kept(b.root(), &orphan.digest);
    }
}

/// A library caller's minimum age too long for the clock keeps everything.
#[test]
fn min_age_beyond_the_earliest_time_keeps_everything() {
    let mut b = LayoutBuilder::new();
    let orphan = b.orphan_blob("o");
    let config = regsweep::gc::GcConfig {
        delete_untagged: true,
        threads: Some(2),
        delete_threads: Some(2),
        min_age: regsweep::duration::Age::from(Duration::MAX),
        ..regsweep::gc::GcConfig::new(regsweep::storage::target::storage_root(b.root()).unwrap())
    };
    let collector = regsweep::gc::Collector::new(config).unwrap();
    let planned = collector.plan().unwrap();
    assert!(planned.cutoff.is_some(), "a minimum age is never dropped");
    let outcome = collector.sweep(
        &planned,
        regsweep::storage::fs::sweep::Disposal::Delete,
        true,
        planned.now,
    );
    assert!(outcome.gone.iter().all(|g| !g), "nothing is old enough");
    assert_blob_kept(b.root(), &orphan.digest);
}
