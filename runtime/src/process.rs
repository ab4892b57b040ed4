//! What the kernel says a process has spent, for the benchmarks' CPU per
//! event: on a shared machine a run's rate moves with whatever else runs,
//! its CPU per event far less. Linux only (`/proc`).

/// User and system CPU of `/proc/<entry>` so far, in clock ticks
/// (`USER_HZ`): `entry` is a process id, `self`, or a thread's
/// `self/task/<tid>`. `None` if the process is gone or not on Linux.
pub fn cpu_ticks(entry: impl std::fmt::Display) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{entry}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count from after it.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    // utime and stime are fields 14 and 15 of stat(5); the first after the
    // name is field 3.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_spent_some_cpu_and_a_missing_one_none() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(spin.elapsed());
        }
        assert!(cpu_ticks("self").is_some_and(|ticks| ticks > 0));
        assert_eq!(cpu_ticks(u32::MAX), None);
    }
}
