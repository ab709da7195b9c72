//! Benchmarks live in benches/; this library holds what the bench binaries share.

/// Median of `v` (the upper one for an even count), 0 for none.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// False when `cargo bench NAME_FILTER` names another benchmark: `cargo bench` passes
/// `--bench` and the user's filter to every bench binary.
pub fn selected(name: &str) -> bool {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    filter.is_empty() || name.contains(&filter)
}
