//! herald: a real-time push server.
//!
//! One ordered, bounded, resumable history per channel, delivered over
//! WebSocket, Server-Sent Events and HTTP long polling. The layers read top
//! to bottom: [`http`] takes requests, [`engine`] stores and sequences
//! messages on top of the [`hub`], and [`transport`] turns subscription
//! events into bytes on a wire.

pub mod auth;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod config_file;
pub mod demo;
pub mod engine;
pub mod http;
pub mod hub;
pub mod telemetry;
pub mod transport;
