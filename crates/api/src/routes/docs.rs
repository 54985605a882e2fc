//! The API's own documentation: the OpenAPI document at `/openapi.json`, and a
//! human-readable page at `/docs` rendered by Redoc, whose script the API
//! serves itself (no CDN).

use axum::http::{Method, header};
use axum::response::{Html, IntoResponse};

use crate::authz::Policy;
use crate::openapi;
use crate::routes::{Doc, Route};

const REDOC: &str = include_str!("../../assets/redoc/redoc.standalone.js");

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            Method::GET,
            "/openapi.json",
            Policy::Public,
            Doc::Page,
            document,
        ),
        Route::new(Method::GET, "/docs", Policy::Public, Doc::Page, page),
        Route::new(
            Method::GET,
            "/docs/redoc.standalone.js",
            Policy::Public,
            Doc::Page,
            script,
        ),
    ]
}

async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document_text(),
    )
}

async fn page() -> Html<&'static str> {
    Html(
        r#"<!DOCTYPE html>
<html>
  <head>
    <title>Arcus migration API</title>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <style>body { margin: 0; padding: 0; }</style>
  </head>
  <body>
    <redoc spec-url="/openapi.json"></redoc>
    <script src="/docs/redoc.standalone.js"></script>
  </body>
</html>
"#,
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        REDOC,
    )
}
