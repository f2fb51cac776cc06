//! Message ids, resume points and multi-channel cursors.
//!
//! An id is `EPOCH-SEQ`: the channel's history epoch in base 36 and a
//! sequence number that grows by exactly one per message, so a subscriber can
//! tell a gap from silence and a stale id (another epoch) from a live one.
//! Clients treat ids as opaque strings. A subscription over several channels
//! resumes from a cursor, `name=EPOCH-SEQ,name=EPOCH-SEQ`, which names each
//! channel's last id (documented in docs/protocol.md so clients that only kept
//! per-channel ids can build one).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::name::{ChannelName, NameError};

/// One message's place in one channel's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId {
    pub epoch: u64,
    pub seq: u64,
}

impl MessageId {
    pub fn new(epoch: u64, seq: u64) -> Self {
        Self { epoch, seq }
    }
}

/// Why a cursor or id could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CursorError {
    #[error("{0:?} is not a message id (expected the id or cursor the server sent)")]
    BadId(String),
    #[error("cursor names a bad channel: {0}")]
    BadChannel(#[from] NameError),
    #[error(
        "a subscription to several channels resumes from a cursor (name=id,...), not a single id"
    )]
    NeedsChannels,
    #[error("cursor is longer than {0} bytes")]
    TooLong(usize),
}

/// Longest cursor text accepted (128 channels of long names fit).
pub const MAX_CURSOR_LEN: usize = 32 * 1024;

fn write_base36(mut n: u64, out: &mut String) {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = [0u8; 13];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n % 36) as usize];
        n /= 36;
        if n == 0 {
            break;
        }
    }
    for b in &buf[i..] {
        out.push(*b as char);
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(24);
        write_base36(self.epoch, &mut s);
        write!(f, "{s}-{}", self.seq)
    }
}

impl FromStr for MessageId {
    type Err = CursorError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let bad = || CursorError::BadId(raw.chars().take(64).collect());
        let (epoch, seq) = raw.split_once('-').ok_or_else(bad)?;
        let epoch_ok = !epoch.is_empty()
            && epoch.len() <= 13
            && epoch
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        if !epoch_ok || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let epoch = u64::from_str_radix(epoch, 36).map_err(|_| bad())?;
        let seq = seq.parse().map_err(|_| bad())?;
        Ok(Self { epoch, seq })
    }
}

/// Where a subscription to one channel starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Only messages published from now on.
    Now,
    /// Everything still in history (`since=0`), with no gap report for what was trimmed.
    Oldest,
    /// Everything after this id.
    After(MessageId),
}

/// The last id delivered on each channel of a subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    entries: Vec<(ChannelName, MessageId)>,
}

impl Cursor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `id` as the last one seen on `channel`.
    pub fn set(&mut self, channel: &ChannelName, id: MessageId) {
        match self.entries.iter_mut().find(|(c, _)| c == channel) {
            Some(entry) => entry.1 = id,
            None => self.entries.push((channel.clone(), id)),
        }
    }

    pub fn get(&self, channel: &ChannelName) -> Option<MessageId> {
        self.entries
            .iter()
            .find(|(c, _)| c == channel)
            .map(|(_, id)| *id)
    }

    /// The channels this cursor covers, in subscription order.
    pub fn channels(&self) -> impl Iterator<Item = &ChannelName> {
        self.entries.iter().map(|(c, _)| c)
    }

    pub fn remove(&mut self, channel: &ChannelName) {
        self.entries.retain(|(c, _)| c != channel);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The text clients hand back: the bare id for one channel, `name=id,...` for several.
    pub fn render(&self) -> String {
        match self.entries.as_slice() {
            [(_, id)] => id.to_string(),
            entries => {
                let mut out = String::with_capacity(entries.len() * 32);
                for (i, (channel, id)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(channel.as_str());
                    out.push('=');
                    out.push_str(&id.to_string());
                }
                out
            }
        }
    }

    /// Parses `raw` into one starting point per channel of a subscription.
    ///
    /// `0` means "oldest kept" for every channel; a bare id fits only a
    /// one-channel subscription; a named cursor may omit channels (they start
    /// from now) and may name others (ignored).
    pub fn parse_since(raw: &str, channels: &[ChannelName]) -> Result<Vec<Since>, CursorError> {
        if raw.len() > MAX_CURSOR_LEN {
            return Err(CursorError::TooLong(MAX_CURSOR_LEN));
        }
        let raw = raw.trim();
        if raw == "0" {
            return Ok(vec![Since::Oldest; channels.len()]);
        }
        if !raw.contains('=') {
            let id: MessageId = raw.parse()?;
            return match channels {
                [_] => Ok(vec![Since::After(id)]),
                _ => Err(CursorError::NeedsChannels),
            };
        }
        let mut named = Cursor::new();
        for entry in raw.split(',') {
            let (name, id) = entry
                .split_once('=')
                .ok_or_else(|| CursorError::BadId(entry.chars().take(64).collect()))?;
            let name = ChannelName::parse(name)?;
            named.set(&name, id.parse()?);
        }
        Ok(channels
            .iter()
            .map(|c| named.get(c).map_or(Since::Now, Since::After))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    #[test]
    fn ids_render_as_base36_epoch_and_decimal_seq() {
        assert_eq!(MessageId::new(35, 7).to_string(), "z-7");
        assert_eq!(MessageId::new(0, 0).to_string(), "0-0");
        assert_eq!("z-7".parse::<MessageId>().unwrap(), MessageId::new(35, 7));
        for bad in [
            "",
            "-",
            "z-",
            "-1",
            "Z-1",
            "z-1x",
            "z-1-2",
            "zzzzzzzzzzzzzz-1",
        ] {
            assert!(bad.parse::<MessageId>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn since_understands_zero_bare_ids_and_named_cursors() {
        let one = [name("a")];
        let two = [name("a"), name("b")];
        assert_eq!(
            Cursor::parse_since("0", &two).unwrap(),
            vec![Since::Oldest, Since::Oldest]
        );
        assert_eq!(
            Cursor::parse_since("k-3", &one).unwrap(),
            vec![Since::After(MessageId::new(20, 3))]
        );
        assert_eq!(
            Cursor::parse_since("k-3", &two),
            Err(CursorError::NeedsChannels)
        );
        assert_eq!(
            Cursor::parse_since("b=k-3,zz=k-1", &two).unwrap(),
            vec![Since::Now, Since::After(MessageId::new(20, 3))]
        );
        assert!(Cursor::parse_since("a=nope", &two).is_err());
        assert!(Cursor::parse_since("a b=k-1", &two).is_err());
    }

    fn channel_strategy() -> impl Strategy<Value = ChannelName> {
        "[A-Za-z0-9_.:@-]{1,20}".prop_map(|s| ChannelName::parse(&s).unwrap())
    }

    proptest! {
        #[test]
        fn ids_round_trip(epoch in any::<u64>(), seq in any::<u64>()) {
            let id = MessageId::new(epoch, seq);
            prop_assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
        }

        #[test]
        fn cursors_round_trip(entries in proptest::collection::vec(
            (channel_strategy(), any::<u64>(), any::<u64>()), 1..8)
        ) {
            let mut cursor = Cursor::new();
            for (channel, epoch, seq) in &entries {
                cursor.set(channel, MessageId::new(*epoch, *seq));
            }
            let channels: Vec<ChannelName> = cursor.entries.iter().map(|(c, _)| c.clone()).collect();
            let parsed = Cursor::parse_since(&cursor.render(), &channels).unwrap();
            let expected: Vec<Since> = cursor.entries.iter().map(|(_, id)| Since::After(*id)).collect();
            prop_assert_eq!(parsed, expected);
        }
    }
}
