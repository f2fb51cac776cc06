//! The hot endpoints called without the router: `GET /sub/{channels}`,
//! `POST /pub/{channel}` and `POST /pub`, for requests the lean HTTP/1 path
//! ([`lean`](super::lean)) takes.
//!
//! axum's routing, extractors and boxed futures, and the CORS layer around
//! them, cost about a fifth of a long poll's CPU (measured with perf; see
//! docs/BENCHMARKS.md, "Requests without hyper"). Here the same handler
//! functions are called directly, with the same extracted arguments, and
//! the CORS headers the router's layer adds to a non-preflight response are
//! added the same way. Anything unusual (a percent-encoded path segment, a
//! query that does not parse) goes through the router, so that its answer
//! stays the router's.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request};
use axum::response::{IntoResponse, Response};

use super::{publish, subscribe};
use crate::config::ServerConfig;
use crate::transport::Context;

/// A request for one of the hot endpoints, with its raw path parameter.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Subscribe(String),
    PublishOne(String),
    PublishBatch,
}

impl Route {
    /// The endpoint `method` and `path` name, if it is one of the hot ones
    /// and its parameter needs no decoding.
    pub fn of(method: &Method, path: &str) -> Option<Self> {
        let parameter = |prefix: &str| {
            path.strip_prefix(prefix)
                .filter(|rest| !rest.is_empty() && !rest.contains(['/', '%']))
                .map(str::to_owned)
        };
        match *method {
            Method::GET => parameter("/sub/").map(Self::Subscribe),
            Method::POST if path == "/pub" => Some(Self::PublishBatch),
            Method::POST => parameter("/pub/").map(Self::PublishOne),
            _ => None,
        }
    }
}

/// Answers `request` on `route` as the router would.
pub async fn call(ctx: &Context, route: Route, request: Request<Body>) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = answer(ctx, route, request).await;
    add_cors_headers(&ctx.config, origin.as_ref(), response.headers_mut());
    response
}

async fn answer(ctx: &Context, route: Route, request: Request<Body>) -> Response {
    let query = match route {
        Route::PublishBatch => None,
        Route::Subscribe(_) | Route::PublishOne(_) => {
            match Query::<HashMap<String, String>>::try_from_uri(request.uri()) {
                Ok(query) => Some(query),
                Err(rejection) => return rejection.into_response(),
            }
        }
    };
    let state = State(ctx.clone());
    match (route, query) {
        (Route::Subscribe(channels), Some(query)) => {
            subscribe::subscribe(state, Ok(Path(channels)), query, request)
                .await
                .into_response()
        }
        (Route::PublishOne(channel), Some(query)) => {
            let (parts, body) = request.into_parts();
            let peer = peer_of(&parts.extensions);
            publish::publish_one(state, peer, Ok(Path(channel)), query, parts.headers, body)
                .await
                .into_response()
        }
        (Route::PublishBatch, _) => {
            let (parts, body) = request.into_parts();
            let peer = peer_of(&parts.extensions);
            publish::publish_batch(state, peer, parts.headers, body)
                .await
                .into_response()
        }
        (Route::Subscribe(_) | Route::PublishOne(_), None) => {
            unreachable!("the query is parsed for these routes")
        }
    }
}

fn peer_of(extensions: &axum::http::Extensions) -> ConnectInfo<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
        .unwrap_or(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 0))))
}

/// The headers the router's CORS layer (`super::cors`) puts on a response
/// to a request that is not a preflight: `Vary` always, and
/// `Access-Control-Allow-Origin` for an allowed origin (`*` when any is).
pub fn add_cors_headers(
    config: &ServerConfig,
    origin: Option<&HeaderValue>,
    headers: &mut HeaderMap,
) {
    headers.append(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    let allowed = match &config.allowed_origins {
        Some(list) if !list.iter().any(|o| o == "*") => origin
            .filter(|origin| list.iter().any(|o| o.as_bytes() == origin.as_bytes()))
            .cloned(),
        _ => Some(HeaderValue::from_static("*")),
    };
    if let Some(allowed) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[test]
    fn routes_only_the_hot_endpoints_with_plain_parameters() {
        assert_eq!(
            Route::of(&Method::GET, "/sub/a,b"),
            Some(Route::Subscribe("a,b".into()))
        );
        assert_eq!(
            Route::of(&Method::POST, "/pub/a"),
            Some(Route::PublishOne("a".into()))
        );
        assert_eq!(Route::of(&Method::POST, "/pub"), Some(Route::PublishBatch));
        for (method, path) in [
            (Method::GET, "/sub/"),
            (Method::GET, "/sub/a/b"),
            (Method::GET, "/sub/a%20b"),
            (Method::GET, "/pub/a"),
            (Method::POST, "/pub/"),
            (Method::POST, "/pub/a/presence"),
            (Method::POST, "/sub/a"),
            (Method::DELETE, "/pub/a"),
        ] {
            assert_eq!(Route::of(&method, path), None, "{method} {path}");
        }
    }

    /// The headers tower-http's layer, as the router configures it, adds.
    async fn layer_headers(config: &ServerConfig, origin: Option<&str>) -> HeaderMap {
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .layer(super::super::cors(config));
        let mut request = Request::get("/");
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let mut headers = response.headers().clone();
        headers.remove(header::CONTENT_TYPE);
        headers.remove(header::CONTENT_LENGTH);
        headers
    }

    #[tokio::test]
    async fn cors_headers_are_the_layers() {
        let any = ServerConfig::default();
        let listed = ServerConfig {
            allowed_origins: Some(vec![
                "https://app.example".into(),
                "https://b.example".into(),
            ]),
            ..ServerConfig::default()
        };
        let star = ServerConfig {
            allowed_origins: Some(vec!["*".into()]),
            ..ServerConfig::default()
        };
        for config in [&any, &listed, &star] {
            for origin in [
                None,
                Some("https://app.example"),
                Some("https://evil.example"),
            ] {
                let mut ours = HeaderMap::new();
                let value = origin.map(|o| HeaderValue::from_str(o).unwrap());
                add_cors_headers(config, value.as_ref(), &mut ours);
                assert_eq!(
                    ours,
                    layer_headers(config, origin).await,
                    "{:?} from {origin:?}",
                    config.allowed_origins
                );
            }
        }
    }
}
