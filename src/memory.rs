//! The process' memory as the kernel sees it (Python's allocations are invisible to Redis'
//! own accounting): used by RG.PYSTATS, INFO and the benchmarks.

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessMemory {
    pub rss: u64,
    pub peak_rss: u64,
}

/// Parse `VmRSS` and `VmHWM` (kB) from the text of /proc/self/status.
pub fn parse_status(status: &str) -> ProcessMemory {
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    ProcessMemory { rss: field("VmRSS:"), peak_rss: field("VmHWM:") }
}

pub fn process_memory() -> ProcessMemory {
    std::fs::read_to_string("/proc/self/status").map(|s| parse_status(&s)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_peak_in_bytes() {
        let m = parse_status("Name:\tredis\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n");
        assert_eq!(m, ProcessMemory { rss: 1024 * 1024, peak_rss: 2048 * 1024 });
        assert_eq!(parse_status(""), ProcessMemory::default());
    }
}
