//! Settings shared by the property tests of the pure parsers.

use proptest::test_runner::{Config, RngSeed};

/// A fixed seed, so a run is repeatable and a failure reproduces as it was found.
pub(crate) const SEED: u64 = 0x676f_6e65_745f_7276;

/// `cases` generated inputs per property in a normal run; `PROPTEST_CASES=N` runs N
/// instead (for example `PROPTEST_CASES=1000000` for a long run). The seed is fixed
/// whatever the environment says; failures are not written to disk.
pub(crate) fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        ..Config::default()
    }
}
