//! Validated channel and event names.
//!
//! Names travel in URLs, SSE fields and cursors, so the allowed alphabet is
//! kept small (`A-Z a-z 0-9 _ - . : @`): nothing needs escaping and no name
//! can break a wire format (a newline in an SSE `event:` would inject fields).

use std::fmt;
use std::sync::Arc;

use thiserror::Error;

/// Longest channel or event name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("a channel name must not be empty")]
    Empty,
    #[error("name is {0} characters long; the limit is {MAX_NAME_LEN}")]
    TooLong(usize),
    #[error("character {0:?} is not allowed; use A-Z a-z 0-9 _ - . : @")]
    BadCharacter(char),
    #[error("names starting with \"herald.\" are reserved")]
    Reserved,
    #[error("{count} channels in one subscription; the limit is {limit}")]
    TooManyChannels { count: usize, limit: usize },
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@')
}

fn validate(raw: &str) -> Result<(), NameError> {
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    if raw.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(raw.chars().count()));
    }
    if let Some(bad) = raw.chars().find(|c| !allowed(*c)) {
        return Err(NameError::BadCharacter(bad));
    }
    Ok(())
}

/// A channel name, checked once and then shared cheaply. A thin pointer
/// (one word, where `Arc<str>` takes two): every stored message holds its
/// channel's name, and the word saved keeps a message in a smaller
/// allocation (docs/BENCHMARKS.md, "Memory per stored message").
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<Box<str>>);

impl serde::Serialize for ChannelName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl ChannelName {
    /// Checks `raw` against the channel-name alphabet.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        validate(raw)?;
        Ok(Self(Arc::new(Box::from(raw))))
    }

    /// Parses a comma-separated list (`news,alerts`), dropping repeats and
    /// refusing more than `limit` channels.
    pub fn parse_list(raw: &str, limit: usize) -> Result<Vec<Self>, NameError> {
        let mut names: Vec<Self> = Vec::new();
        for part in raw.split(',') {
            let name = Self::parse(part)?;
            if !names.contains(&name) {
                names.push(name);
            }
            if names.len() > limit {
                return Err(NameError::TooManyChannels {
                    count: raw.split(',').count(),
                    limit,
                });
            }
        }
        Ok(names)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// The SSE event type a message was published with (`?event=NAME`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventName(Arc<str>);

impl EventName {
    /// Same alphabet as channels; `herald.*` is reserved for the server's own events.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        validate(raw)?;
        if raw.starts_with("herald.") {
            return Err(NameError::Reserved);
        }
        Ok(Self(Arc::from(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// `*` matches any run of characters (`chat.*`, `*`, `user.*.inbox`).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert!(ChannelName::parse("chat.room-1:en@eu_2").is_ok());
        assert_eq!(ChannelName::parse(""), Err(NameError::Empty));
        assert_eq!(ChannelName::parse("a b"), Err(NameError::BadCharacter(' ')));
        assert!(ChannelName::parse(&"x".repeat(128)).is_ok());
        assert!(matches!(
            ChannelName::parse(&"x".repeat(129)),
            Err(NameError::TooLong(129))
        ));
    }

    #[test]
    fn lists_drop_repeats_and_respect_the_limit() {
        let names = ChannelName::parse_list("a,b,a", 8).unwrap();
        assert_eq!(names.len(), 2);
        assert!(ChannelName::parse_list("a,,b", 8).is_err());
        assert!(matches!(
            ChannelName::parse_list("a,b,c", 2),
            Err(NameError::TooManyChannels { .. })
        ));
    }

    #[test]
    fn reserved_event_names_are_refused() {
        assert_eq!(EventName::parse("herald.gap"), Err(NameError::Reserved));
        assert!(EventName::parse("update").is_ok());
        assert!(EventName::parse("bad\nname").is_err());
    }
}
