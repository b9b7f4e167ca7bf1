//! A browser for in-process page tests: a cookie jar and the same-origin headers a browser sends
//! with form posts, over any router (`App`).

use std::collections::BTreeMap;

use axum::body::{Body, to_bytes};
use http::{HeaderMap, Request, StatusCode};
use tower::ServiceExt as _;

/// The host the tests pretend to be.
pub const HOST: &str = "127.0.0.1:8080";
/// The matching origin.
pub const ORIGIN: &str = "http://127.0.0.1:8080";
/// The strict session cookie.
pub const SESSION: &str = "__Host-trustgate_session";

/// Something holding the router under test.
pub trait App {
    /// The router.
    fn app(&self) -> &axum::Router;
}

pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text.
    pub body: String,
}

impl Reply {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The first hidden CSRF token in the page.
    pub fn csrf(&self) -> String {
        hidden(&self.body, "csrf")
    }
}

/// The value of the hidden input `name`, with HTML character references decoded as a browser
/// would before posting it.
pub use trustgate_testkit::html::hidden;

/// A browser: a cookie jar and the same-origin headers a browser sends with form posts.
#[derive(Clone, Default)]
pub struct Browser {
    /// Cookies by name.
    pub jar: BTreeMap<String, String>,
    /// The `Origin` sent with posts.
    pub origin: Option<&'static str>,
    /// The client address the server sees (as `ConnectInfo`); none by default.
    pub ip: Option<std::net::SocketAddr>,
}

impl Browser {
    pub fn new() -> Self {
        Self {
            jar: BTreeMap::new(),
            origin: Some(ORIGIN),
            ip: None,
        }
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn send(
        &mut self,
        pages: &impl App,
        request: http::request::Builder,
        body: Body,
    ) -> Reply {
        let mut request = request.header("host", HOST).header("user-agent", "test");
        if !self.jar.is_empty() {
            request = request.header("cookie", self.cookie_header());
        }
        if let Some(ip) = self.ip {
            request = request.extension(axum::extract::ConnectInfo(ip));
        }
        let response = pages
            .app()
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let reply = Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        for cookie in reply.set_cookies() {
            let pair = cookie.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || cookie.contains("Max-Age=0") {
                    self.jar.remove(name);
                } else {
                    self.jar.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        reply
    }

    pub async fn get(&mut self, pages: &impl App, path: &str) -> Reply {
        self.send(pages, Request::get(path), Body::empty()).await
    }

    pub async fn post(&mut self, pages: &impl App, path: &str, form: &[(&str, &str)]) -> Reply {
        let mut request =
            Request::post(path).header("content-type", "application/x-www-form-urlencoded");
        if let Some(origin) = self.origin {
            request = request.header("origin", origin);
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(pages, request, Body::from(body)).await
    }

    /// Password login through the form.
    pub async fn login(&mut self, pages: &impl App, username: &str, password: &str) -> Reply {
        let form = self.get(pages, "/login").await;
        let csrf = form.csrf();
        self.post(
            pages,
            "/login",
            &[
                ("csrf", &csrf),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    pub fn session(&self) -> Option<String> {
        self.jar.get(SESSION).cloned()
    }
}

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
