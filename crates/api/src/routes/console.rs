//! The migration console at `/console`: a page for people, over the same
//! public API a program uses. Its HTML, script and styles live in
//! `assets/console/` and are compiled into the binary, so the API serves them
//! itself (no CDN, no build step); the page signs in with an entity id and an
//! API key and calls `/v1/...` with it from the browser. These routes are
//! public: the assets hold no data, every call the page makes is authorized
//! like any other.

use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::IntoResponse;

use crate::authz::Policy;
use crate::routes::{Doc, Route};

const PAGE: &str = include_str!("../../assets/console/index.html");
const SCRIPT: &str = include_str!("../../assets/console/console.js");
const STYLES: &str = include_str!("../../assets/console/console.css");

/// The page may load its own script and styles and call this origin, nothing
/// else: no inline script, no other origin, no framing, and its form (which
/// the script submits itself) may not be sent anywhere, so a key never ends
/// up in a URL even if the script failed to load.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/console", Policy::Public, Doc::Page, page),
        Route::new(
            Method::GET,
            "/console/console.js",
            Policy::Public,
            Doc::Page,
            script,
        ),
        Route::new(
            Method::GET,
            "/console/console.css",
            Policy::Public,
            Doc::Page,
            styles,
        ),
    ]
}

/// Headers of every console response. The assets are not versioned by path,
/// so a browser revalidates them rather than pairing a new page with an old
/// script.
fn headers(content_type: &'static str) -> [(HeaderName, HeaderValue); 4] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ]
}

async fn page() -> impl IntoResponse {
    (
        headers("text/html; charset=utf-8"),
        [
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        PAGE,
    )
}

async fn script() -> impl IntoResponse {
    (headers("text/javascript; charset=utf-8"), SCRIPT)
}

async fn styles() -> impl IntoResponse {
    (headers("text/css; charset=utf-8"), STYLES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_loads_nothing_from_elsewhere() {
        for (name, text) in [
            ("index.html", PAGE),
            ("console.js", SCRIPT),
            ("console.css", STYLES),
        ] {
            assert!(!text.contains("://"), "{name} names another origin");
        }
        assert!(PAGE.contains(r#"<script src="/console/console.js""#));
        assert!(PAGE.contains(r#"href="/console/console.css""#));
        // What the policy allows is what the page needs, no more.
        assert!(!PAGE.contains("<script>") && !PAGE.contains(" style="));
    }
}
