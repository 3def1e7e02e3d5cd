//! CPU time of this process's threads, selected by name: how `sesame bench auth` tells the
//! cloud's CPU from the simulated devices' while both run in one process.
//!
//! Read from `/proc/self/task/*/stat` (user + system time, in clock ticks of 10 ms), so a
//! measurement needs seconds of CPU to be precise; the bench runs for that long.

use std::time::Duration;

/// Clock ticks per second of `/proc` times (`USER_HZ`, 100 on every Linux ABI).
const TICKS: u64 = 100;

/// User + system CPU time of the live threads of this process whose name starts with one of
/// `prefixes`, and how many there were.
pub fn threads(prefixes: &[&str]) -> std::io::Result<(Duration, usize)> {
    let mut ticks = 0u64;
    let mut n = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path();
        // A thread may exit between listing and reading: skip it.
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if !prefixes.iter().any(|p| comm.trim_end().starts_with(p)) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
        if let (Some(u), Some(s)) = (field(14), field(15)) {
            ticks += u + s;
            n += 1;
        }
    }
    Ok((Duration::from_millis(ticks * 1000 / TICKS), n))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn a_busy_named_thread_is_counted_and_others_are_not() {
        let busy = std::thread::Builder::new()
            .name("cputime-busy".into())
            .spawn(|| {
                let t = std::time::Instant::now();
                let mut x = 0u64;
                while t.elapsed() < std::time::Duration::from_millis(400) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                // Still alive while measured.
                std::thread::sleep(std::time::Duration::from_millis(300));
                x
            })
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(550));
        let (cpu, n) = super::threads(&["cputime-busy"]).unwrap();
        let (none, m) = super::threads(&["no-such-thread"]).unwrap();
        busy.join().unwrap();
        assert_eq!(n, 1);
        assert!(cpu >= std::time::Duration::from_millis(200), "{cpu:?}");
        assert_eq!((none, m), (std::time::Duration::ZERO, 0));
    }
}
