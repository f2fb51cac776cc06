//! Every error a client can cause, and the one place that turns it into a
//! JSON response: `{"error": {"code": "snake_case", "message": "..."}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use thiserror::Error;

use crate::auth::AuthError;
use crate::engine::EngineError;
use crate::hooks::HookError;
use crate::hub::{CursorError, NameError};

/// Every `code` an [`ApiError`] can carry, so that `herald_rejected_total`
/// is exposed at zero for each from startup (`tests/monitoring.rs` checks
/// the list against the code).
pub const CODES: &[&str] = &[
    "bad_channel",
    "bad_cursor",
    "too_large",
    "not_found",
    "method_not_allowed",
    "engine_unavailable",
    "storage_full",
    "not_replicated",
    "shutting_down",
    "unauthorized",
    "token_expired",
    "invalid_token",
    "forbidden",
    "origin_not_allowed",
    "rate_limited",
    "auth_unavailable",
    "presence_off",
    // ApiError::bad_request codes
    "bad_data",
    "bad_encoding",
    "bad_event",
    "bad_idempotency_key",
    "bad_json",
    "bad_limit",
    "bad_timeout",
    "bad_transport",
    "bad_websocket_upgrade",
    "batch_too_large",
    "body_timeout",
    "not_subscribed",
    "too_many_subscriptions",
    "websocket_upgrade_required",
];

/// A request that could not be served, as the client will be told.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("bad channel name: {0}")]
    BadChannel(#[from] NameError),
    #[error("bad cursor: {0}")]
    BadCursor(#[from] CursorError),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("the body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("origin {0:?} is not allowed")]
    OriginNotAllowed(String),
    #[error("too many requests from this address; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error("channel {0:?} has no presence (presence = true in its [[channels]] table)")]
    PresenceOff(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadChannel(_) | Self::BadCursor(_) | Self::BadRequest { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound(_) | Self::PresenceOff(_) => StatusCode::NOT_FOUND,
            Self::Hook(HookError::Refused { .. }) => StatusCode::FORBIDDEN,
            Self::Hook(HookError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Engine(EngineError::StorageFull(_)) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Engine(_) | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Auth(AuthError::Forbidden { .. } | AuthError::NoClientPublish { .. })
            | Self::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::Auth(_) => StatusCode::UNAUTHORIZED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadChannel(_) => "bad_channel",
            Self::BadCursor(_) => "bad_cursor",
            Self::BadRequest { code, .. } => code,
            Self::TooLarge { .. } => "too_large",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Engine(EngineError::StorageFull(_)) => "storage_full",
            Self::Engine(EngineError::NotReplicated { .. }) => "not_replicated",
            Self::Engine(_) => "engine_unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::Auth(AuthError::Missing) => "unauthorized",
            Self::Auth(AuthError::Expired) => "token_expired",
            Self::Auth(AuthError::Invalid(_)) => "invalid_token",
            Self::Auth(AuthError::Forbidden { .. } | AuthError::NoClientPublish { .. }) => {
                "forbidden"
            }
            Self::OriginNotAllowed(_) => "origin_not_allowed",
            Self::RateLimited { .. } => "rate_limited",
            Self::Hook(HookError::Refused { .. }) => "forbidden",
            Self::Hook(HookError::Unavailable(_)) => "auth_unavailable",
            Self::PresenceOff(_) => "presence_off",
        }
    }

    /// The JSON error object, also used inside `/ws` error frames.
    pub fn body(&self) -> serde_json::Value {
        json!({ "code": self.code(), "message": self.to_string() })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::telemetry::rejected(self.code());
        let mut response = (self.status(), Json(json!({ "error": self.body() }))).into_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        if matches!(self, Self::TooLarge { .. }) {
            // The body is left unread: say so, rather than let the client
            // send its next request into a connection that is closing.
            response
                .headers_mut()
                .insert("connection", HeaderValue::from_static("close"));
        }
        if let Self::RateLimited { retry_after } = self {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(retry_after));
        }
        if matches!(self, Self::Engine(_) | Self::ShuttingDown) {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        response
    }
}
