//! The seed and case count of the live differential tests
//! (`tests/parity_live.rs`, `tests/linear_parity.rs`), shared by
//! `#[path]`: `TCH_QUANT_PARITY_SEED` (default: from the clock, printed by
//! each test so a failure can be rerun) and `TCH_QUANT_PARITY_COUNT`.

/// `TCH_QUANT_PARITY_SEED`, or one from the clock.
pub fn seed() -> u64 {
    std::env::var("TCH_QUANT_PARITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() % 1_000_000)
                .unwrap_or(0)
        })
}

/// `TCH_QUANT_PARITY_COUNT`, or `default`.
pub fn count(default: usize) -> usize {
    std::env::var("TCH_QUANT_PARITY_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
