//! The human forms of durations and sizes users type in flags and files
//! (`90s`, `1h`, `64KiB`).

use std::time::Duration;

/// Parses `90s`, `1h`, `1h30m`, `250ms`; a bare number is seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    if let Ok(seconds) = raw.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(raw)
        .map_err(|e| format!("{raw:?} is not a duration ({e}); try 90s, 5m or 1h"))
}

/// Parses `65536`, `64KiB`, `64 KB`, `1MiB`.
pub fn parse_size(raw: &str) -> Result<usize, String> {
    let bytes = parse_size::Config::new()
        .with_binary()
        .parse_size(raw.trim())
        .map_err(|e| format!("{raw:?} is not a size ({e}); try 65536, 64KiB or 1MiB"))?;
    usize::try_from(bytes).map_err(|_| format!("{raw:?} is too large"))
}
