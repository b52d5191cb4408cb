//! Process CPU time from `/proc`, shared by the benchmarks.

/// User + system CPU time of a process so far, in seconds (Linux clock ticks are 1/100 s). `pid` is a
/// number or `self`.
pub fn cpu_s(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; the state comes first, utime and
    // stime are the 12th and 13th (indices 11 and 12).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}
