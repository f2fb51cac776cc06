//! The TOML file's `[[channels]]` tables (DESIGN.md §8): each a `pattern`
//! and the options it sets for the channels it matches. Every problem is
//! reported with its line: an unknown key (with the closest known one), a
//! value of the wrong type, a pattern that is not a channel name with `*`
//! wildcards, a missing pattern.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::file::ConfigFileError;
use super::units::{parse_duration, parse_size};
use crate::hub::{ChannelName, ChannelRule};

/// The keys a `[[channels]]` table may hold.
pub const CHANNEL_KEYS: &[&str] = &[
    "pattern",
    "history_size",
    "history_ttl",
    "history_bytes",
    "max_message_size",
    "presence",
    "join_leave",
    "client_publish",
    "anonymous",
];

/// The `[[channels]]` rules of a file's text, in file order (`path` names
/// it in errors). No `channels` key: no rules.
pub fn channel_rules(text: &str, path: &Path) -> Result<Vec<ChannelRule>, ConfigFileError> {
    let error = |span: Range<usize>, message: String| ConfigFileError::Channels {
        path: path.to_owned(),
        line: line_of(text, span.start),
        message,
    };
    let document = DeTable::parse(text).map_err(|e| ConfigFileError::Syntax {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let Some(channels) = document.get_ref().get("channels") else {
        return Ok(Vec::new());
    };
    let Some(tables) = channels.get_ref().as_array() else {
        return Err(error(
            channels.span(),
            "`channels` must be [[channels]] tables".into(),
        ));
    };
    tables
        .iter()
        .map(|table| match table.get_ref().as_table() {
            Some(keys) => rule(keys, table.span(), &error),
            None => Err(error(
                table.span(),
                "each `channels` entry must be a table".into(),
            )),
        })
        .collect()
}

fn rule(
    table: &DeTable<'_>,
    span: Range<usize>,
    error: &impl Fn(Range<usize>, String) -> ConfigFileError,
) -> Result<ChannelRule, ConfigFileError> {
    let mut rule = ChannelRule::default();
    let mut pattern = None;
    for (key, value) in table.iter() {
        let name = key.get_ref().as_ref();
        let at = || key.span();
        match name {
            "pattern" => {
                let text = string(value, name, error)?;
                check_pattern(text).map_err(|message| error(value.span(), message))?;
                pattern = Some(text.to_owned());
            }
            "history_size" => rule.history_size = Some(count(value, name, error)?),
            "history_ttl" => rule.history_ttl = Some(duration(value, name, error)?),
            "history_bytes" => rule.history_bytes = Some(size(value, name, error)?),
            "max_message_size" => rule.max_message_size = Some(size(value, name, error)?),
            "presence" => rule.presence = Some(boolean(value, name, error)?),
            "join_leave" => rule.join_leave = Some(boolean(value, name, error)?),
            "client_publish" => rule.client_publish = Some(boolean(value, name, error)?),
            "anonymous" => rule.anonymous = Some(boolean(value, name, error)?),
            other => {
                let suggestion = CHANNEL_KEYS
                    .iter()
                    .map(|k| (strsim::jaro_winkler(other, k), k))
                    .filter(|(score, _)| *score > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, k)| format!(" (did you mean {k}?)"))
                    .unwrap_or_default();
                return Err(error(
                    at(),
                    format!("unknown key `{other}` in [[channels]]{suggestion}"),
                ));
            }
        }
    }
    if rule.join_leave == Some(true) && rule.presence != Some(true) {
        return Err(error(
            span,
            "`join_leave = true` needs `presence = true` in the same table".into(),
        ));
    }
    rule.pattern = pattern.ok_or_else(|| {
        error(
            span,
            "a [[channels]] table needs a `pattern` (e.g. \"room.*\")".into(),
        )
    })?;
    Ok(rule)
}

/// `rule` as the `[[channels]]` table `herald config show` prints.
pub fn rule_toml(rule: &ChannelRule) -> String {
    let mut out = format!("\n[[channels]]\npattern = {:?}\n", rule.pattern);
    let mut line = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            out.push_str(&format!("{key} = {value}\n"));
        }
    };
    line("history_size", rule.history_size.map(|n| n.to_string()));
    line(
        "history_ttl",
        rule.history_ttl
            .map(|d| format!("{:?}", humantime::format_duration(d).to_string())),
    );
    line("history_bytes", rule.history_bytes.map(|n| n.to_string()));
    line(
        "max_message_size",
        rule.max_message_size.map(|n| n.to_string()),
    );
    line("presence", rule.presence.map(|b| b.to_string()));
    line("join_leave", rule.join_leave.map(|b| b.to_string()));
    line("client_publish", rule.client_publish.map(|b| b.to_string()));
    line("anonymous", rule.anonymous.map(|b| b.to_string()));
    out
}

/// A pattern is a channel name in which `*` stands for any run of characters.
fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("`pattern` is empty; use \"*\" for every channel".into());
    }
    // Each `*` stands for at least one character of a valid name.
    let example = pattern.replace('*', "x");
    ChannelName::parse(&example)
        .map(|_| ())
        .map_err(|e| format!("`pattern` {pattern:?} can match no channel name: {e}"))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn wrong_type(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    wanted: &str,
    error: &impl Fn(Range<usize>, String) -> ConfigFileError,
) -> ConfigFileError {
    error(
        value.span(),
        format!(
            "`{key}` must be {wanted}, not {}",
            value.get_ref().type_str()
        ),
    )
}

fn string<'a>(
    value: &'a Spanned<DeValue<'_>>,
    key: &str,
    error: &impl Fn(Range<usize>, String) -> ConfigFileError,
) -> Result<&'a str, ConfigFileError> {
    value
        .get_ref()
        .as_str()
        .ok_or_else(|| wrong_type(value, key, "a string", error))
}

fn boolean(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    error: &impl Fn(Range<usize>, String) -> ConfigFileError,
) -> Result<bool, ConfigFileError> {
    value
        .get_ref()
        .as_bool()
        .ok_or_else(|| wrong_type(value, key, "true or false", error))
}

fn integer(value: &Spanned<DeValue<'_>>) -> Option<u64> {
    let integer = value.get_ref().as_integer()?;
    u64::from_str_radix(&integer.as_str().replace('_', ""), integer.radix()).ok()
}

fn count(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    error: &impl Fn(Range<usize>, String) -> ConfigFileError,
) -> Result<usize, ConfigFileError> {
    integer(value)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| wrong_type(value, key, "a whole number of 0 or more", error))
}

/// A size: a number of bytes, or a string such as "64KiB".
fn size(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    error: &impl Fn(Range<usize>, String) -> ConfigFileError,
) -> Result<usize, ConfigFileError> {
    if let Some(text) = value.get_ref().as_str() {
        return parse_size(text)
            .map_err(|message| error(value.span(), format!("`{key}`: {message}")));
    }
    count(value, key, error)
        .map_err(|_| wrong_type(value, key, "a size (65536 or \"64KiB\")", error))
}

/// A duration: seconds, or a string such as "90s" or "1h".
fn duration(
    value: &Spanned<DeValue<'_>>,
    key: &str,
    error: &impl Fn(Range<usize>, String) -> ConfigFileError,
) -> Result<Duration, ConfigFileError> {
    if let Some(text) = value.get_ref().as_str() {
        return parse_duration(text)
            .map_err(|message| error(value.span(), format!("`{key}`: {message}")));
    }
    integer(value)
        .map(Duration::from_secs)
        .ok_or_else(|| wrong_type(value, key, "a duration (90 or \"90s\")", error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Result<Vec<ChannelRule>, String> {
        channel_rules(text, Path::new("herald.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn tables_are_read_in_order_with_every_key() {
        let read = rules(
            "history_size = 10\n\
             [[channels]]\n\
             pattern = \"room.*\"\n\
             history_size = 100\n\
             history_ttl = \"10m\"\n\
             history_bytes = \"1MiB\"\n\
             max_message_size = 4096\n\
             presence = true\n\
             join_leave = true\n\
             client_publish = false\n\
             anonymous = true\n\
             [[channels]]\n\
             pattern = \"*\"\n",
        )
        .unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(
            read[0],
            ChannelRule {
                pattern: "room.*".into(),
                history_size: Some(100),
                history_ttl: Some(Duration::from_secs(600)),
                history_bytes: Some(1 << 20),
                max_message_size: Some(4096),
                presence: Some(true),
                join_leave: Some(true),
                client_publish: Some(false),
                anonymous: Some(true),
            }
        );
        assert_eq!(read[1].pattern, "*");
        assert_eq!(rules("demo = true\n").unwrap(), Vec::new());
    }

    #[test]
    fn problems_name_their_line() {
        let typo = rules("[[channels]]\npattern = \"a.*\"\npresense = true\n").unwrap_err();
        assert!(typo.contains("line 3"), "{typo}");
        assert!(typo.contains("did you mean presence?"), "{typo}");
        let bad_type =
            rules("[[channels]]\npattern = \"a.*\"\nhistory_size = \"lots\"\n").unwrap_err();
        assert!(
            bad_type.contains("line 3") && bad_type.contains("history_size"),
            "{bad_type}"
        );
        let bad_pattern = rules("\n[[channels]]\npattern = \"room/*\"\n").unwrap_err();
        assert!(
            bad_pattern.contains("line 3") && bad_pattern.contains("room/*"),
            "{bad_pattern}"
        );
        let no_pattern = rules("[[channels]]\npresence = true\n").unwrap_err();
        assert!(no_pattern.contains("needs a `pattern`"), "{no_pattern}");
        let join_alone = rules("[[channels]]\npattern = \"a\"\njoin_leave = true\n").unwrap_err();
        assert!(
            join_alone.contains("needs `presence = true`"),
            "{join_alone}"
        );
        let not_tables = rules("channels = 3\n").unwrap_err();
        assert!(not_tables.contains("[[channels]]"), "{not_tables}");
        let negative = rules("[[channels]]\npattern = \"a\"\nhistory_size = -1\n").unwrap_err();
        assert!(negative.contains("history_size"), "{negative}");
    }
}
