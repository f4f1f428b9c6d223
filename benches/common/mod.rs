//! Shared by the benches: reading criterion's medians back for the ratio tables.

use std::path::PathBuf;

/// The median (ns) criterion measured for `group/id` in this run, from its `estimates.json`.
pub fn median_ns(group: &str, id: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let path = target
        .join("criterion")
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// CPU time counters of the whole machine from `/proc/stat` (its `cpu` line, in clock ticks):
/// `(steal, total)`. `None` off Linux or if unreadable.
#[allow(dead_code)] // read by the compile and graph benches only
pub fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, counted in user]
    let steal = *fields.get(7)?;
    Some((steal, fields.iter().take(8).sum()))
}

/// The share of the machine's CPU time the hypervisor gave to other guests (steal) between two
/// [`cpu_ticks`] readings: when it is high, the host was busy and threads did not get their
/// cores, so thread-scaling ratios from that stretch say little about the code.
#[allow(dead_code)] // read by the compile and graph benches only
pub fn steal_share(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((s0, t0), (s1, t1)) = (before?, after?);
    (t1 > t0).then(|| (s1 - s0) as f64 / (t1 - t0) as f64)
}
