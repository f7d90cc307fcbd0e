//! The CPU time a process has used, from /proc/PID/stat: a create phase's cost per object,
//! which varies less between runs on a shared machine than its throughput does.

/// Clock ticks per second of /proc's CPU times (`USER_HZ`, 100 on Linux x86).
const USER_HZ: f64 = 100.0;

/// User plus system CPU seconds of `pid` so far, its exited threads included.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which may hold spaces: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = |field: usize| fields.get(field - 3).and_then(|text| text.parse::<u64>().ok());
    Some((ticks(14)? + ticks(15)?) as f64 / USER_HZ)
}

/// CPU microseconds per object between two readings of the same process.
pub fn micros_per_object(before: Option<f64>, after: Option<f64>, objects: u64) -> Option<f64> {
    Some((after? - before?) * 1e6 / objects.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_cpu() {
        let pid = std::process::id();
        let before = cpu_seconds(pid).expect("our own /proc/PID/stat");
        let mut spin = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(100) {
            spin = spin.wrapping_add(1);
        }
        assert!(spin > 0);
        let after = cpu_seconds(pid).unwrap();
        assert!(after > before, "{before} -> {after}");
        assert_eq!(micros_per_object(Some(1.0), Some(1.5), 1000), Some(500.0));
        assert_eq!(micros_per_object(None, Some(1.5), 1000), None);
        assert_eq!(cpu_seconds(u32::MAX), None);
    }
}
