//! The TOML configuration file (`--config FILE`) and the precedence rule:
//! a flag beats an environment variable (`HERALD_*`), which beats the file,
//! which beats the default.
//!
//! File keys are the flags' names with underscores (`history_size`). Rather
//! than keep a second copy of every option, the file's entries are turned
//! into flags and handed to the same clap parser, but only for options that
//! neither the command line nor the environment set, so every value is
//! checked by the same parser and the precedence falls out of clap's own.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use thiserror::Error;

use super::cli::Cli;
use super::flags::ServeArgs;

/// Keys that are not `serve` options but may appear in the file.
const GLOBAL_KEYS: &[&str] = &["log_level", "log_format"];

/// Keys whose values `config show` never prints.
const SECRET_KEYS: &[&str] = &["publish_key", "jwt_secret", "redis"];

/// A key the file should not have, with the closest known key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    pub key: String,
    pub suggestion: Option<String>,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown key `{}`", self.key)?;
        if let Some(suggestion) = &self.suggestion {
            write!(f, " (did you mean {suggestion}?)")?;
        }
        Ok(())
    }
}

/// Why a configuration file was refused.
#[derive(Debug, Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {}", .keys.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    UnknownKeys {
        path: PathBuf,
        keys: Vec<UnknownKey>,
    },
    #[error("{path}: key `{key}` must be a string, number, boolean or array of strings")]
    BadType { path: PathBuf, key: String },
    #[error("{path}: {message}")]
    BadValue { path: PathBuf, message: String },
    #[error("{path}, line {line}: {message}")]
    Channels {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Every key a file may hold.
pub fn known_keys() -> Vec<String> {
    let command = ServeArgs::augment_args(clap::Command::new("serve"));
    command
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .filter(|id| id != "config" && id != "help")
        .chain(GLOBAL_KEYS.iter().map(|k| k.to_string()))
        .collect()
}

use clap::Args as _;

/// One entry of the file, as it will be given to the parser.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Value(String),
    Switch(bool),
}

/// Reads and checks `path`: syntax, known keys, value types.
fn read(path: &Path) -> Result<Vec<(String, Entry)>, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    entries(&text, path)
}

/// Checks the text of a file (`path` names it in errors): syntax, keys, types.
fn entries(text: &str, path: &Path) -> Result<Vec<(String, Entry)>, ConfigFileError> {
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigFileError::Syntax {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
    // `[[channels]]` tables are not flags: checked (with their lines) here,
    // read into the configuration by `channel_rules_of`.
    if table.remove("channels").is_some() {
        super::channels::channel_rules(text, path)?;
    }
    let known = known_keys();
    let unknown: Vec<UnknownKey> = table
        .keys()
        .filter(|key| !known.contains(key))
        .map(|key| UnknownKey {
            key: key.clone(),
            suggestion: known
                .iter()
                .map(|k| (strsim::jaro_winkler(key, k), k))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| k.clone()),
        })
        .collect();
    if !unknown.is_empty() {
        return Err(ConfigFileError::UnknownKeys {
            path: path.to_owned(),
            keys: unknown,
        });
    }
    table
        .into_iter()
        .map(|(key, value)| {
            let entry = match value {
                toml::Value::String(s) => Entry::Value(s),
                toml::Value::Integer(i) => Entry::Value(i.to_string()),
                toml::Value::Float(f) => Entry::Value(f.to_string()),
                toml::Value::Boolean(b) => Entry::Switch(b),
                toml::Value::Array(items) => {
                    let parts: Option<Vec<String>> = items
                        .iter()
                        .map(|v| v.as_str().map(str::to_owned))
                        .collect();
                    match parts {
                        Some(parts) => Entry::Value(parts.join(",")),
                        None => {
                            return Err(ConfigFileError::BadType {
                                path: path.to_owned(),
                                key,
                            })
                        }
                    }
                }
                _ => {
                    return Err(ConfigFileError::BadType {
                        path: path.to_owned(),
                        key,
                    })
                }
            };
            Ok((key, entry))
        })
        .collect()
}

fn flag(key: &str, entry: &Entry) -> Option<OsString> {
    let name = key.replace('_', "-");
    match entry {
        Entry::Value(value) => Some(format!("--{name}={value}").into()),
        Entry::Switch(true) => Some(format!("--{name}").into()),
        Entry::Switch(false) => None,
    }
}

/// True when neither a flag nor the environment gave `id` a value.
fn unset(matches: &ArgMatches, id: &str) -> bool {
    !matches!(
        matches
            .try_get_raw(id)
            .ok()
            .flatten()
            .and(matches.value_source(id)),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// The serve-like subcommand's matches (`serve` or `config show`), if any.
fn serve_matches(matches: &ArgMatches) -> Option<&ArgMatches> {
    match matches.subcommand() {
        Some(("serve", sub)) => Some(sub),
        Some(("config", sub)) => match sub.subcommand() {
            Some(("show", show)) => Some(show),
            _ => None,
        },
        _ => None,
    }
}

/// Parses the command line, folding in `--config FILE` below flags and environment.
pub fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    let matches = Cli::command().try_get_matches_from(effective_args(args)?)?;
    Cli::from_arg_matches(&matches)
}

/// The `[[channels]]` rules of the file at `path`, in file order.
pub fn channel_rules_of(path: &Path) -> Result<Vec<crate::hub::ChannelRule>, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    super::channels::channel_rules(&text, path)
}

/// `herald config check FILE`: every problem found, or `Ok` with the number of keys.
pub fn check(path: &Path) -> Result<usize, ConfigFileError> {
    check_entries(read(path)?, path)
}

/// Like [`check`], on a file's text (for tools and fuzzing).
pub fn check_text(text: &str) -> Result<usize, ConfigFileError> {
    let path = Path::new("<text>");
    check_entries(entries(text, path)?, path)
}

fn check_entries(entries: Vec<(String, Entry)>, path: &Path) -> Result<usize, ConfigFileError> {
    let mut args: Vec<OsString> = vec!["herald".into(), "serve".into()];
    args.extend(entries.iter().filter_map(|(key, entry)| flag(key, entry)));
    // Values are checked by the real parser, environment ignored.
    let command = Cli::command().mut_subcommand("serve", |serve| {
        let ids: Vec<String> = serve
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        ids.iter().fold(serve, |cmd, id| {
            cmd.mut_arg(id, |arg| arg.env(None::<&str>))
        })
    });
    let matches = command
        .try_get_matches_from(args)
        .map_err(|e| ConfigFileError::BadValue {
            path: path.to_owned(),
            message: e.kind().to_string() + ": " + e.to_string().lines().next().unwrap_or_default(),
        })?;
    // Rules between options that clap does not express (a tls:// address
    // and the certificate files go together; the Redis options' rules).
    let bad = |message: String| ConfigFileError::BadValue {
        path: path.to_owned(),
        message,
    };
    if let Some(("serve", serve)) = matches.subcommand() {
        let args = ServeArgs::from_arg_matches(serve).map_err(|e| bad(e.to_string()))?;
        args.listeners().map_err(|e| bad(e.to_string()))?;
        args.redis_settings().map_err(|e| bad(e.to_string()))?;
    }
    Ok(entries.len())
}

/// `herald config show`: the effective value of every option, secrets redacted, as TOML.
pub fn show(args: Vec<OsString>) -> Result<String, clap::Error> {
    let matches = Cli::command().try_get_matches_from(effective_args(args)?)?;
    let Some(serve) = serve_matches(&matches) else {
        return Ok(String::new());
    };
    let mut out = String::new();
    for key in known_keys() {
        let Some(values) = serve.get_raw(&key) else {
            continue;
        };
        let text: Vec<String> = values.map(|v| v.to_string_lossy().into_owned()).collect();
        let text = text.join(",");
        let shown = if SECRET_KEYS.contains(&key.as_str()) && !text.is_empty() {
            "\"<redacted>\"".to_owned()
        } else if text == "true"
            || text == "false"
            || (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        {
            text
        } else {
            format!("{text:?}")
        };
        out.push_str(&format!("{key} = {shown}\n"));
    }
    if let Some(path) = serve.get_one::<PathBuf>("config") {
        let rules = channel_rules_of(path).map_err(|e| {
            Cli::command().error(clap::error::ErrorKind::ValueValidation, e.to_string())
        })?;
        for rule in rules {
            out.push_str(&super::channels::rule_toml(&rule));
        }
    }
    Ok(out)
}

/// The command line plus a flag for each file entry that no flag or variable set.
fn effective_args(args: Vec<OsString>) -> Result<Vec<OsString>, clap::Error> {
    let matches = Cli::command().try_get_matches_from(&args)?;
    let Some(serve) = serve_matches(&matches) else {
        return Ok(args);
    };
    let Some(path) = serve.get_one::<PathBuf>("config") else {
        return Ok(args);
    };
    let entries = read(path).map_err(|e| {
        Cli::command().error(clap::error::ErrorKind::ValueValidation, e.to_string())
    })?;
    let mut args = args;
    args.extend(
        entries
            .iter()
            .filter(|(key, _)| unset(serve, key))
            .filter_map(|(key, entry)| flag(key, entry)),
    );
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion() {
        let dir = std::env::temp_dir().join(format!("herald-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("typo.toml");
        std::fs::write(&path, "history_sise = 10\n").unwrap();
        let error = check(&path).unwrap_err().to_string();
        assert!(error.contains("did you mean history_size?"), "{error}");
        std::fs::write(&path, "history_size = \"lots\"\n").unwrap();
        assert!(matches!(
            check(&path),
            Err(ConfigFileError::BadValue { .. })
        ));
        std::fs::write(
            &path,
            "history_size = 10\nhistory_ttl = \"90s\"\ndemo = true\n",
        )
        .unwrap();
        assert_eq!(check(&path).unwrap(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
