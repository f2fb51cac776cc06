//! Channel options by pattern (DESIGN.md §8): `[[channels]]` rules in file
//! order over the global defaults. The first rule whose pattern matches a
//! channel sets its options; whatever that rule leaves unset comes from the
//! defaults (never from a later rule). Pure data: the configuration builds a
//! [`ChannelPolicy`] once, and the engines and transports ask it per channel.

use std::time::Duration;

use super::history::HistoryLimits;
use super::name::{pattern_matches, ChannelName};

/// The options in force for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelOptions {
    pub history: HistoryLimits,
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// Track who is subscribed.
    pub presence: bool,
    /// Tell subscribers when someone joins or leaves (with presence).
    pub join_leave: bool,
    /// WebSocket and `/ws` clients may publish (still subject to auth).
    pub client_publish: bool,
    /// Subscribing needs no credential even when auth is configured.
    pub anonymous: bool,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            history: HistoryLimits::default(),
            max_message_size: 64 * 1024,
            presence: false,
            join_leave: false,
            client_publish: true,
            anonymous: false,
        }
    }
}

/// One `[[channels]]` table: a pattern and the options it sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelRule {
    /// A channel name with `*` wildcards (`room.*`, `*`, `user.*.inbox`).
    pub pattern: String,
    pub history_size: Option<usize>,
    pub history_ttl: Option<Duration>,
    pub history_bytes: Option<usize>,
    pub max_message_size: Option<usize>,
    pub presence: Option<bool>,
    pub join_leave: Option<bool>,
    pub client_publish: Option<bool>,
    pub anonymous: Option<bool>,
}

impl ChannelRule {
    /// Whether this rule applies to `channel`.
    pub fn matches(&self, channel: &ChannelName) -> bool {
        pattern_matches(&self.pattern, channel.as_str())
    }

    /// `defaults` with what this rule sets laid over them.
    pub fn apply(&self, defaults: &ChannelOptions) -> ChannelOptions {
        ChannelOptions {
            history: HistoryLimits {
                max_messages: self.history_size.unwrap_or(defaults.history.max_messages),
                max_bytes: self.history_bytes.unwrap_or(defaults.history.max_bytes),
                ttl: self.history_ttl.unwrap_or(defaults.history.ttl),
            },
            max_message_size: self.max_message_size.unwrap_or(defaults.max_message_size),
            presence: self.presence.unwrap_or(defaults.presence),
            join_leave: self.join_leave.unwrap_or(defaults.join_leave),
            client_publish: self.client_publish.unwrap_or(defaults.client_publish),
            anonymous: self.anonymous.unwrap_or(defaults.anonymous),
        }
    }
}

/// Every channel's options: the rules, first match wins, over the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelPolicy {
    defaults: ChannelOptions,
    rules: Vec<ChannelRule>,
}

impl ChannelPolicy {
    pub fn new(defaults: ChannelOptions, rules: Vec<ChannelRule>) -> Self {
        Self { defaults, rules }
    }

    /// The same options for every channel.
    pub fn uniform(history: HistoryLimits) -> Self {
        Self::new(
            ChannelOptions {
                history,
                ..ChannelOptions::default()
            },
            Vec::new(),
        )
    }

    /// The options in force for `channel`.
    pub fn options(&self, channel: &ChannelName) -> ChannelOptions {
        match self.rules.iter().find(|rule| rule.matches(channel)) {
            Some(rule) => rule.apply(&self.defaults),
            None => self.defaults,
        }
    }

    /// The history limits of `channel` (the engines' question).
    pub fn history(&self, channel: &ChannelName) -> HistoryLimits {
        self.options(channel).history
    }

    /// The options of a channel no rule matches.
    pub fn defaults(&self) -> &ChannelOptions {
        &self.defaults
    }

    pub fn rules(&self) -> &[ChannelRule] {
        &self.rules
    }

    /// Whether some channel needs no credential to subscribe to.
    pub fn has_presence(&self) -> bool {
        self.defaults.presence || self.rules.iter().any(|rule| rule.presence == Some(true))
    }

    pub fn has_anonymous(&self) -> bool {
        self.defaults.anonymous || self.rules.iter().any(|rule| rule.anonymous == Some(true))
    }

    /// The largest message any channel accepts: the bound for reading a
    /// message before its channel is known (a WebSocket frame, a batch).
    pub fn largest_message_size(&self) -> usize {
        self.rules
            .iter()
            .filter_map(|rule| rule.max_message_size)
            .fold(self.defaults.max_message_size, usize::max)
    }

    /// The longest history age any channel may keep: how long an engine
    /// must remember a quiet channel before it can forget it.
    pub fn longest_ttl(&self) -> Duration {
        self.rules
            .iter()
            .filter_map(|rule| rule.history_ttl)
            .fold(self.defaults.history.ttl, Duration::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ChannelName {
        ChannelName::parse(s).unwrap()
    }

    #[test]
    fn the_first_matching_rule_wins_and_unset_keys_fall_back_to_the_defaults() {
        let policy = ChannelPolicy::new(
            ChannelOptions::default(),
            vec![
                ChannelRule {
                    pattern: "room.vip.*".into(),
                    history_size: Some(5),
                    ..ChannelRule::default()
                },
                ChannelRule {
                    pattern: "room.*".into(),
                    history_size: Some(100),
                    presence: Some(true),
                    client_publish: Some(false),
                    ..ChannelRule::default()
                },
            ],
        );
        let vip = policy.options(&name("room.vip.1"));
        assert_eq!(vip.history.max_messages, 5);
        // The first match sets only history_size: presence is the default,
        // not the later rule's.
        assert!(!vip.presence && vip.client_publish);
        let room = policy.options(&name("room.2"));
        assert_eq!(room.history.max_messages, 100);
        assert!(room.presence && !room.client_publish);
        assert_eq!(room.history.ttl, HistoryLimits::default().ttl);
        assert_eq!(policy.options(&name("news")), ChannelOptions::default());
    }

    #[test]
    fn the_longest_ttl_covers_every_rule() {
        let policy = ChannelPolicy::new(
            ChannelOptions::default(),
            vec![ChannelRule {
                pattern: "keep.*".into(),
                history_ttl: Some(Duration::from_secs(86_400)),
                ..ChannelRule::default()
            }],
        );
        assert_eq!(policy.longest_ttl(), Duration::from_secs(86_400));
        assert_eq!(
            ChannelPolicy::default().longest_ttl(),
            HistoryLimits::default().ttl
        );
    }
}
