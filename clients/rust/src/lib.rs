//! The Rust client for herald, the real-time push server, for backends.
//!
//! [`Herald`] publishes through herald's HTTP API (`/pub`): a publish is
//! answered once the message is in the channel's history. [`Herald::subscribe`]
//! follows channels over one `/ws` socket as a [`Subscription`]: it keeps
//! each channel's position, reconnects with backoff when the socket drops,
//! resumes exactly where it was, and reports what herald could no longer
//! replay as an [`Item::Gap`]. [`Token`] mints the JWT a browser subscribes
//! with, and [`verify_webhook`] checks herald's webhook signatures.
//!
//! ```no_run
//! use herald_client::{Herald, Item};
//!
//! # async fn run() -> Result<(), herald_client::Error> {
//! let herald = Herald::new("http://127.0.0.1:8080")?.with_key("PUBLISH_KEY");
//! let answer = herald.publish("news", "hello").event("update").await?;
//! println!("{} reached {} subscribers", answer.id, answer.subscribers);
//!
//! let mut news = herald.subscribe(["news", "alerts"]).since("0").await?;
//! while let Some(item) = news.next().await? {
//!     match item {
//!         Item::Message(message) => println!("{}: {:?}", message.channel, message.data),
//!         Item::Gap(gap) => println!("missed {:?} on {}", gap.missed, gap.channel),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! It is a crate of its own, rather than a module of the `herald` server
//! crate, so that a backend compiles an HTTP and a WebSocket client and not
//! the server (axum, hyper, SQLite, Redis...). The wire it speaks is
//! described in herald's `docs/protocol.md`.

mod error;
mod publish;
mod signing;
mod subscribe;

pub use error::Error;
pub use publish::{BatchItem, ChannelInfo, Data, Deleted, Herald, Publish, Published};
pub use signing::{verify_webhook, Token};
pub use subscribe::{Gap, Item, Message, Subscribe, Subscription};
