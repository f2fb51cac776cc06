//! The bench message: `SEQ:SEND_TIME_US:` followed by padding to the wanted
//! size. Every subscriber reads the sequence number (to check order) and the
//! send time (for latency) back out of the data, whatever server carried it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (the generator and the subscribers share one clock).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The data of message `seq`, sent at `sent_us`, padded with `x` to `size` bytes.
pub fn encode(seq: u64, sent_us: u64, size: usize) -> String {
    let mut data = format!("{seq}:{sent_us}:");
    if data.len() < size {
        data.extend(std::iter::repeat_n('x', size - data.len()));
    }
    data
}

/// The sequence number and send time in `data`, or `None` if it is not a bench message.
/// Like [`encode`], but what follows the header is a JSON document of
/// quote-like records whose numbers vary with `seq` (a typical push
/// payload, compressible as real JSON is rather than as a run of `x`).
pub fn encode_json(seq: u64, sent_us: u64, size: usize) -> String {
    let mut data = format!("{seq}:{sent_us}:{{\"items\":[");
    let mut state = seq
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut i = 0u64;
    while data.len() + 2 < size {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = state >> 33;
        if i > 0 {
            data.push(',');
        }
        data.push_str(&format!(
            "{{\"symbol\":\"SYM{}\",\"bid\":{}.{:02},\"ask\":{}.{:02},\"size\":{},\"venue\":\"{}\"}}",
            r % 500,
            100 + r % 50,
            r % 100,
            100 + r % 50,
            (r >> 7) % 100,
            r % 1000,
            ["XNAS", "XNYS", "BATS", "ARCX"][(r % 4) as usize]
        ));
        i += 1;
    }
    data.push_str("]}");
    data
}

pub fn decode(data: &[u8]) -> Option<(u64, u64)> {
    let mut parts = data.splitn(3, |b| *b == b':');
    let seq = number(parts.next()?)?;
    let sent = number(parts.next()?)?;
    parts.next()?;
    Some((seq, sent))
}

fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// Finds the bench message inside a longer reply (an echo server may add a prefix).
pub fn find(data: &[u8]) -> Option<(u64, u64)> {
    (0..data.len())
        .filter(|&i| i == 0 || !data[i - 1].is_ascii_digit())
        .take(64)
        .find_map(|i| decode(&data[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_size() {
        let data = encode(42, 1_700_000_000_123_456, 256);
        assert_eq!(data.len(), 256);
        assert_eq!(decode(data.as_bytes()), Some((42, 1_700_000_000_123_456)));
        let short = encode(7, 9, 1);
        assert_eq!(short, "7:9:");
        assert_eq!(decode(short.as_bytes()), Some((7, 9)));
    }

    #[test]
    fn rejects_other_data() {
        assert_eq!(decode(b"hello"), None);
        assert_eq!(decode(b"1:2"), None);
        assert_eq!(decode(b"a:2:"), None);
        assert_eq!(decode(b"99999999999999999999:2:"), None);
    }

    #[test]
    fn finds_after_a_prefix() {
        let reply = format!("服务器回应:{}", encode(3, 4, 32));
        assert_eq!(find(reply.as_bytes()), Some((3, 4)));
    }
}
