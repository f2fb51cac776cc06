//! Static assets compiled into the binary: the console page and herald.js.

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
