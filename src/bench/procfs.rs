//! The server's cost as the kernel counts it: CPU seconds (user + system,
//! every thread) from `/proc/PID/stat` and resident memory from
//! `/proc/PID/status`, sampled before and after a run.

use serde::{Deserialize, Serialize};

use super::BenchError;

/// Linux reports `/proc/PID/stat` times in USER_HZ, which the kernel ABI
/// fixes at 100 on every mainstream architecture (x86, arm, riscv).
const TICKS_PER_SECOND: f64 = 100.0;

/// One sample of a process's usage.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    /// utime + stime, in seconds.
    pub cpu_s: f64,
    /// stime alone: the kernel's work on the process's behalf (system
    /// calls, and on loopback the receiving side's network stack too).
    #[serde(default)]
    pub system_s: f64,
    /// VmRSS, in KiB.
    pub rss_kib: u64,
}

impl Usage {
    /// Reads the usage of process `pid`.
    pub fn sample(pid: u32) -> Result<Self, BenchError> {
        let stat = read(pid, "stat")?;
        let status = read(pid, "status")?;
        let (user, system) = cpu_times(&stat).ok_or_else(|| bad(pid, "stat"))?;
        Ok(Self {
            cpu_s: user + system,
            system_s: system,
            rss_kib: rss_kib(&status).ok_or_else(|| bad(pid, "status"))?,
        })
    }
}

/// Samples `pid` if one was given.
pub fn sample(pid: Option<u32>) -> Result<Option<Usage>, BenchError> {
    pid.map(Usage::sample).transpose()
}

/// CPU seconds this process has used so far (0 if /proc cannot be read).
pub fn own_cpu_seconds() -> f64 {
    Usage::sample(std::process::id())
        .map(|u| u.cpu_s)
        .unwrap_or(0.0)
}

fn read(pid: u32, file: &str) -> Result<String, BenchError> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .map_err(|e| BenchError::Proc(format!("/proc/{pid}/{file}: {e}")))
}

fn bad(pid: u32, file: &str) -> BenchError {
    BenchError::Proc(format!("/proc/{pid}/{file}: unexpected format"))
}

/// utime and stime, in seconds, from a `/proc/PID/stat` line. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted
/// after its last `)`.
fn cpu_times(stat: &str) -> Option<(f64, f64)> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((
        utime as f64 / TICKS_PER_SECOND,
        stime as f64 / TICKS_PER_SECOND,
    ))
}

fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_times(stat), Some((2.5, 0.5)));
        assert_eq!(rss_kib("Name:\tx\nVmRSS:\t  10240 kB\n"), Some(10240));
    }

    #[test]
    fn samples_this_process() {
        let usage = Usage::sample(std::process::id()).unwrap();
        assert!(usage.rss_kib > 0);
        assert!(usage.cpu_s >= 0.0);
    }
}
