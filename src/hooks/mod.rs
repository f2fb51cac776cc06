//! Hooks to the application's backend: the auth hook herald asks before a
//! client subscribes or publishes (`auth`), and the webhooks it sends when
//! channels are occupied or vacated and members join or leave (`webhook`).
//!
//! Both are outgoing HTTP calls that must never hold up delivery: the auth
//! hook is asked concurrently, with a bounded number of calls in flight and
//! a timeout (and fails closed), and webhooks are sent by their own task
//! from the engine's event stream.

pub mod auth;
pub mod webhook;

pub use auth::{AuthHook, HookAction, HookDecision, HookError, HookRequest};
pub use webhook::{sign, Webhook};
