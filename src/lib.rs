//! herald: a real-time push server.
//!
//! One ordered, bounded, resumable history per channel, delivered over
//! WebSocket, Server-Sent Events and HTTP long polling. Dependencies point
//! one way, checked by `tests/layers.rs`: [`http`] takes requests and routes
//! them to a [`transport`], which turns subscription events into bytes on a
//! wire; both talk to one [`engine`], which stores and sequences messages on
//! top of the [`hub`] (pure logic, no I/O). Below or beside them, named by
//! any layer above the engine: [`config`] (every option: flags, file,
//! environment, resolved settings), [`error`] (what a client is told),
//! [`limits`], [`auth`], [`hooks`] (the auth hook and webhooks: calls to the
//! application's backend) and [`telemetry`]. An engine is opened from its own
//! settings and never names the configuration, a transport or HTTP.

pub mod auth;
pub mod bench;
pub mod client;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod hooks;
pub mod http;
pub mod hub;
pub mod limits;
pub mod proxy;
pub mod telemetry;
pub mod transport;
