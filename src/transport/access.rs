//! Who may subscribe and who may publish from a client connection, per
//! channel: the credentials (`auth`) and the channel's options together
//! (`anonymous` opens subscribing to anyone; `client_publish = false` closes
//! WebSocket and `/ws` publishing to everyone). Every transport asks here.

use super::Context;
use crate::auth::{AuthError, Credential};
use crate::hub::ChannelName;

/// Refuses a subscription `who` may not make to `channel`.
pub fn may_subscribe(
    ctx: &Context,
    who: &Credential,
    channel: &ChannelName,
) -> Result<(), AuthError> {
    if ctx.channels.options(channel).anonymous {
        return Ok(());
    }
    ctx.config.auth.may_subscribe(who, channel)
}

/// Whether subscribing to `channel` needs no credential at all.
pub fn is_anonymous(ctx: &Context, channel: &ChannelName) -> bool {
    ctx.channels.options(channel).anonymous
}

/// Refuses a publish from a WebSocket or `/ws` client that `who` may not
/// make to `channel` (the HTTP publish API is the backend's, and is not
/// subject to `client_publish`).
pub fn may_publish_from_client(
    ctx: &Context,
    who: &Credential,
    channel: &ChannelName,
) -> Result<(), AuthError> {
    if !ctx.channels.options(channel).client_publish {
        return Err(AuthError::NoClientPublish {
            channel: channel.as_str().to_owned(),
        });
    }
    ctx.config.auth.may_publish(who, channel)
}
