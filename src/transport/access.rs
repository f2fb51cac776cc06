//! Who may subscribe and who may publish from a client connection, per
//! channel: the credentials (`auth`), the channel's options (`anonymous`
//! opens subscribing to anyone; `client_publish = false` closes WebSocket
//! and `/ws` publishing to everyone) and, when configured, the
//! application's auth hook — all must agree. Every transport asks here, and
//! gets back who the client is for presence.

use std::net::IpAddr;
use std::sync::Arc;

use super::Context;
use crate::auth::{AuthError, Credential};
use crate::error::ApiError;
use crate::hooks::auth::ForwardedHeaders;
use crate::hooks::{HookAction, HookRequest};
use crate::hub::{ChannelName, PresenceEntry};

/// A client connection as the auth hook and presence see it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub who: Credential,
    /// `ws`, `ws-protocol`, `sse` or `poll`.
    pub transport: &'static str,
    /// The id herald gave the connection (or the long poller's own).
    pub client: Arc<str>,
    pub ip: IpAddr,
    pub headers: ForwardedHeaders,
    /// A long poll's credential, under which hook decisions may be cached.
    pub poll_credential: Option<Option<String>>,
}

impl Caller {
    /// The JWT `sub`.
    pub fn user(&self) -> Option<&str> {
        self.who.subject()
    }

    /// Its presence entry as the credential describes it (user from `sub`,
    /// info from the claim `herald.info`).
    pub fn entry(&self) -> Arc<PresenceEntry> {
        Arc::new(PresenceEntry {
            client: self.client.clone(),
            user: self.user().map(str::to_owned),
            info: self.who.info().cloned(),
            transport: self.transport,
        })
    }
}

/// Refuses a subscription `who` may not make to `channel` (credentials and
/// channel options only; see [`authorize_subscribe`] for the whole check).
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

/// Everything a subscription to `channel` must pass: credentials, channel
/// options and the auth hook. Returns the presence entry to hold it with
/// when the hook named the user or gave info (`None`: the caller's own).
pub async fn authorize_subscribe(
    ctx: &Context,
    caller: &Caller,
    channel: &ChannelName,
) -> Result<Option<Arc<PresenceEntry>>, ApiError> {
    may_subscribe(ctx, &caller.who, channel)?;
    ask_hook(ctx, caller, channel, HookAction::Subscribe).await
}

/// Refuses a publish from a WebSocket or `/ws` client that `who` may not
/// make to `channel` (the HTTP publish API is the backend's, and is not
/// subject to `client_publish` or the hook).
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

/// [`may_publish_from_client`], then the auth hook.
pub async fn authorize_client_publish(
    ctx: &Context,
    caller: &Caller,
    channel: &ChannelName,
) -> Result<(), ApiError> {
    may_publish_from_client(ctx, &caller.who, channel)?;
    ask_hook(ctx, caller, channel, HookAction::Publish).await?;
    Ok(())
}

async fn ask_hook(
    ctx: &Context,
    caller: &Caller,
    channel: &ChannelName,
    action: HookAction,
) -> Result<Option<Arc<PresenceEntry>>, ApiError> {
    let Some(hook) = &ctx.auth_hook else {
        return Ok(None);
    };
    let request = HookRequest {
        action,
        channel: channel.as_str(),
        transport: caller.transport,
        client: &caller.client,
        user: caller.user(),
        ip: caller.ip,
        headers: &caller.headers,
    };
    let decision = hook.ask(&request, caller.poll_credential.clone()).await?;
    if decision.user.is_none() && decision.info.is_none() {
        return Ok(None);
    }
    let mut entry = (*caller.entry()).clone();
    if decision.user.is_some() {
        entry.user = decision.user;
    }
    if decision.info.is_some() {
        entry.info = decision.info;
    }
    Ok(Some(Arc::new(entry)))
}
