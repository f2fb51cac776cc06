//! Static assets compiled into the binary: the console page, herald.js and
//! the OpenAPI description.

use axum::http::header;
use axum::response::{Html, IntoResponse};

/// `GET /`: the console.
pub async fn console() -> Html<&'static str> {
    Html(include_str!("../../assets/console.html"))
}

/// `GET /herald.js`: the browser client.
pub async fn client_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../clients/js/herald.js"),
    )
}

/// `GET /openapi.yaml`: the HTTP API description (`docs/openapi.yaml`).
pub async fn openapi() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/yaml"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../docs/openapi.yaml"),
    )
}
