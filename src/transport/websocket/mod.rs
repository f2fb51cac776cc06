//! RFC 6455 on the server side, written once for herald's three WebSocket
//! endpoints: the raw subscription on `/sub/{channels}` (`transport::ws`),
//! the JSON protocol on `/ws` (`transport::socket`) and the demo echo on
//! `/demo/ws`.
//!
//! - [`frame`]: the wire format without I/O: server frames built once and
//!   shared, client frames decoded under the size, masking, UTF-8 and
//!   close-code rules (fuzzed: `fuzz/fuzz_targets/ws_frames.rs`).
//! - [`deflate`]: permessage-deflate (RFC 7692): the offer, compressed
//!   frames built once per message, inflating under the size limit.
//! - [`Handshake`]: the opening handshake, answered without a library.
//! - [`WebSocket`]: the connection after it: reads and answers control
//!   frames, pings, keeps the deadline, the idle timer and the shutdown
//!   signal, and writes frames (a lone one in one `send`, a batch in one
//!   `writev`).
//!
//! A transport only decides what a client's message means and which frames
//! a subscription event becomes.

mod connection;
pub mod deflate;
pub mod frame;
mod handshake;
mod heartbeat;
mod watch;

pub use connection::{Batch, Close, Next, Step, WebSocket};
pub use frame::close_code;
pub use handshake::{derive_accept_key, Handshake};

use crate::hub::ChannelPolicy;

/// Most bytes in one client message (all its fragments): the largest
/// publish any channel takes (each channel's own limit is checked once the
/// message names it), plus room for the `/ws` protocol's JSON around the data.
pub fn max_message(channels: &ChannelPolicy) -> usize {
    channels.largest_message_size().max(1024) + 1024
}
