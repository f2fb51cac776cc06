//! The auth hook (`--auth-hook URL`): the application's backend decides
//! whether a client may subscribe to a channel or publish from a WebSocket,
//! and may name the user and give presence info.
//!
//! herald POSTs `{"action", "channel", "transport", "client", "user", "ip",
//! "headers": {"cookie"?, "authorization"?, "origin"?}}`. A `2xx` answer
//! `{"allow": true, "user"?, "info"?}` allows; `403` or `{"allow": false}`
//! refuses; anything else (a timeout, a refused connection, a `5xx`, an
//! answer that is not such JSON) is "unavailable" and refuses too: the hook
//! fails closed. Calls run concurrently, at most [`MAX_IN_FLIGHT`] at once,
//! each bounded by the timeout (waiting for a slot included). Decisions for
//! long polls may be cached per (credential, cookie, channel).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::hub::ChannelName;

/// Most hook calls in flight at once; more wait (within their timeout).
pub const MAX_IN_FLIGHT: usize = 256;

/// Most cached long-poll decisions; beyond it expired ones are dropped,
/// then all.
const MAX_CACHED: usize = 100_000;

/// What the client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookAction {
    Subscribe,
    Publish,
}

/// The headers passed on to the hook (only those the client sent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct ForwardedHeaders {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl ForwardedHeaders {
    /// The cookie, authorization and origin headers of a request.
    pub fn of(headers: &axum::http::HeaderMap) -> Self {
        let get = |name: axum::http::header::HeaderName| {
            let values: Vec<&str> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join("; "))
        };
        Self {
            cookie: get(axum::http::header::COOKIE),
            authorization: get(axum::http::header::AUTHORIZATION),
            origin: get(axum::http::header::ORIGIN),
        }
    }
}

/// One question to the hook.
#[derive(Debug, Clone, Serialize)]
pub struct HookRequest<'a> {
    pub action: HookAction,
    pub channel: &'a str,
    pub transport: &'static str,
    pub client: &'a str,
    pub user: Option<&'a str>,
    pub ip: IpAddr,
    pub headers: &'a ForwardedHeaders,
}

/// The hook's yes, with who the client is for presence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookDecision {
    pub user: Option<String>,
    pub info: Option<Value>,
}

/// Why the hook did not allow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HookError {
    #[error("the auth hook refused {action} on {channel}")]
    Refused {
        action: &'static str,
        channel: String,
    },
    #[error("the auth hook is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Deserialize)]
struct Answer {
    allow: bool,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    info: Option<Value>,
}

type CacheKey = (Option<String>, ForwardedHeaders, ChannelName);

/// A configured auth hook.
#[derive(Debug)]
pub struct AuthHook {
    url: String,
    timeout: Duration,
    cache_for: Duration,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    cache: DashMap<CacheKey, (Result<HookDecision, HookError>, Instant)>,
}

impl AuthHook {
    pub fn new(url: String, timeout: Duration, cache_for: Duration) -> Self {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            url,
            timeout,
            cache_for,
            client,
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            cache: DashMap::new(),
        }
    }

    /// Asks the hook, or answers from the cache for a long poll (`cache_key`
    /// is the poller's credential; `None` never caches).
    pub async fn ask(
        &self,
        request: &HookRequest<'_>,
        cache_key: Option<Option<String>>,
    ) -> Result<HookDecision, HookError> {
        let key = cache_key
            .filter(|_| !self.cache_for.is_zero())
            .and_then(|credential| {
                ChannelName::parse(request.channel)
                    .ok()
                    .map(|channel| (credential, request.headers.clone(), channel))
            });
        if let Some(key) = &key {
            if let Some(cached) = self.cache.get(key) {
                if cached.1 > Instant::now() {
                    crate::telemetry::auth_hook("cached");
                    return cached.0.clone();
                }
            }
        }
        let answer = self.call(request).await;
        crate::telemetry::auth_hook(match &answer {
            Ok(_) => "allowed",
            Err(HookError::Refused { .. }) => "refused",
            Err(HookError::Unavailable(_)) => "unavailable",
        });
        // An unavailable hook is asked again next time, not remembered.
        if let (Some(key), false) = (key, matches!(answer, Err(HookError::Unavailable(_)))) {
            if self.cache.len() >= MAX_CACHED {
                let now = Instant::now();
                self.cache.retain(|_, (_, until)| *until > now);
                if self.cache.len() >= MAX_CACHED {
                    self.cache.clear();
                }
            }
            self.cache
                .insert(key, (answer.clone(), Instant::now() + self.cache_for));
        }
        answer
    }

    async fn call(&self, request: &HookRequest<'_>) -> Result<HookDecision, HookError> {
        let unavailable = |why: String| HookError::Unavailable(why);
        let refused = || HookError::Refused {
            action: match request.action {
                HookAction::Subscribe => "subscribe",
                HookAction::Publish => "publish",
            },
            channel: request.channel.to_owned(),
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| unavailable("too many hook calls waiting".into()))?
            .map_err(|_| unavailable("closed".into()))?;
        let response =
            tokio::time::timeout_at(deadline, self.client.post(&self.url).json(request).send())
                .await
                .map_err(|_| unavailable(format!("no answer within {:?}", self.timeout)))?
                .map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(refused());
        }
        if !status.is_success() {
            return Err(unavailable(format!("answered {status}")));
        }
        let body = tokio::time::timeout_at(deadline, response.bytes())
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| unavailable(e.to_string()))?;
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("answer is not {{\"allow\": ...}}: {e}")))?;
        if !answer.allow {
            return Err(refused());
        }
        Ok(HookDecision {
            user: answer.user,
            info: answer.info,
        })
    }
}
