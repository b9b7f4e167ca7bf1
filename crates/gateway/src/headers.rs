//! What happens to headers on the way through: hop-by-hop headers are dropped (RFC 9110
//! §7.6.1), identity headers a client could forge are removed, `X-Forwarded-*` are set.
//!
//! The gateway uses the de-facto `X-Forwarded-For` / `-Proto` / `-Host` headers, not RFC 7239
//! `Forwarded` (most application frameworks read the former): `X-Forwarded-For` is appended to
//! (the peer address last, so an upstream that trusts one proxy hop takes the rightmost
//! entry); `X-Forwarded-Proto` and `X-Forwarded-Host` are replaced, never passed on from the
//! client. An incoming `Forwarded` header is removed: the gateway does not maintain it and an
//! upstream must not trust a client's.

use std::net::IpAddr;

use http::header::{CONNECTION, HOST, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

/// RFC 9110 §7.6.1 and the older `Proxy-Connection`/`Keep-Alive`, plus the proxy
/// authentication pair, which belongs to the hop it authenticates.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Removes the hop-by-hop headers and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The `Upgrade` protocol a request asks for (`Connection: upgrade` and an `Upgrade` value).
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(UPGRADE).cloned()
    } else {
        None
    }
}

/// Removes every header matching `patterns` (exact names, or prefixes ending in `*`),
/// case-insensitively, and always the caller's credentials, `Authorization` and `X-API-Key`:
/// the upstream gets the internal token instead, never the caller's token or key.
pub fn strip_identity(headers: &mut HeaderMap, patterns: &[String]) {
    headers.remove(http::header::AUTHORIZATION);
    headers.remove("x-api-key");
    // The caller's DPoP proof was for the gateway; the upstream gets an unbound internal token.
    headers.remove("dpop");
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str(); // always lower case
            patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(&prefix.to_ascii_lowercase()),
                None => name.eq_ignore_ascii_case(p),
            })
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Sets the forwarding headers for a request from `peer` that arrived with `host`; the
/// `Host` itself is removed so that the client sets the upstream's.
pub fn set_forwarded(headers: &mut HeaderMap, peer: Option<IpAddr>, https: bool) {
    let host = headers.remove(HOST);
    headers.remove("forwarded");
    let x_forwarded_for = HeaderName::from_static("x-forwarded-for");
    if let Some(peer) = peer {
        let previous: Vec<String> = headers
            .get_all(&x_forwarded_for)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        let mut list = previous.join(", ");
        if !list.is_empty() {
            list.push_str(", ");
        }
        list.push_str(&peer.to_string());
        headers.remove(&x_forwarded_for);
        if let Ok(value) = HeaderValue::try_from(list) {
            headers.insert(x_forwarded_for, value);
        }
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
    match host {
        Some(host) => {
            headers.insert(HeaderName::from_static("x-forwarded-host"), host);
        }
        None => {
            headers.remove("x-forwarded-host");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn identity_headers_go_by_name_and_prefix() {
        let mut h = map(&[
            ("authorization", "Bearer client-chosen"),
            ("x-trustgate-user", "admin"),
            ("X-Trustgate-Roles", "admin"),
            ("x-forwarded-user", "admin"),
            ("x-auth-request-email", "a@b"),
            ("x-remote-user", "admin"),
            ("x-request-id", "r1"),
        ]);
        strip_identity(&mut h, &crate::config::default_identity_headers());
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-request-id"));
        // The caller's credentials go whatever the configuration says.
        let mut h = map(&[
            ("authorization", "Bearer tg_live_key"),
            ("X-API-Key", "tg_live_key"),
            ("x-request-id", "r1"),
        ]);
        strip_identity(&mut h, &[]);
        assert_eq!(h.len(), 1, "{h:?}");
    }

    #[test]
    fn forwarded_for_is_appended_and_proto_host_replaced() {
        let mut h = map(&[
            ("host", "gw.example"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        set_forwarded(&mut h, Some("192.0.2.7".parse().expect("ip")), false);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "gw.example");
        assert!(!h.contains_key("forwarded"));
        assert!(!h.contains_key("host"));
    }

    #[test]
    fn upgrade_needs_both_headers() {
        let h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert_eq!(
            upgrade_protocol(&h),
            Some(HeaderValue::from_static("websocket"))
        );
        assert_eq!(upgrade_protocol(&map(&[("upgrade", "websocket")])), None);
    }
}
