//! Where deliveries may go: the URL policy and the resolver that enforces it at connect time.
//!
//! A webhook URL is `https://`, or `http://` only to a loopback host (a receiver on the same
//! machine) unless `allow_http` is set. Whatever the scheme, a URL whose host is, or resolves
//! to, an address no webhook has business with is refused: link-local addresses (which include
//! the cloud metadata service at 169.254.169.254 and fd00:ec2::254), the unspecified address,
//! multicast and broadcast. The check runs when a subscription is created and again on every
//! attempt, and the HTTP client resolves names through [`GuardedResolver`], which drops those
//! addresses from every answer, so a name that later resolves elsewhere (DNS rebinding) cannot
//! reach them either. Private ranges (10/8, 192.168/16, …) stay allowed: receivers inside the
//! deployment's network are the common case.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not an absolute URL.
    #[error("not a valid absolute URL")]
    Invalid,
    /// Neither `https` nor an allowed `http`.
    #[error("the URL must be https (http only to a loopback host, unless allow_http is set)")]
    Scheme,
    /// Credentials in the URL would be sent to the receiver and shown to admins.
    #[error("the URL must not contain a user name or password")]
    Credentials,
    /// A fragment is never sent; it is almost certainly a mistake.
    #[error("the URL must not contain a fragment")]
    Fragment,
    /// The host is an address webhooks may not reach.
    #[error("the URL's host is a link-local, metadata, multicast or unspecified address")]
    ForbiddenAddress,
}

impl TargetError {
    /// A stable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            TargetError::Invalid => "webhook_url_invalid",
            TargetError::Scheme => "webhook_url_insecure",
            TargetError::Credentials => "webhook_url_credentials",
            TargetError::Fragment => "webhook_url_fragment",
            TargetError::ForbiddenAddress => "webhook_url_forbidden_address",
        }
    }
}

/// Checks a delivery URL against the policy; the parsed URL when it passes.
pub fn check_url(text: &str, allow_http: bool) -> Result<Url, TargetError> {
    let url = Url::parse(text.trim()).map_err(|_| TargetError::Invalid)?;
    let host = url.host().ok_or(TargetError::Invalid)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    if url.fragment().is_some() {
        return Err(TargetError::Fragment);
    }
    let ip = match &host {
        Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
        Host::Domain(_) => None,
    };
    if ip.is_some_and(forbidden) {
        return Err(TargetError::ForbiddenAddress);
    }
    if let Host::Domain(name) = &host
        && is_metadata_name(name)
    {
        return Err(TargetError::ForbiddenAddress);
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http || is_loopback_host(&host) => Ok(url),
        _ => Err(TargetError::Scheme),
    }
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    }
}

/// Cloud metadata services reachable by name.
fn is_metadata_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "metadata.google.internal" || name == "metadata" || name == "instance-data"
}

/// Whether no delivery may connect to `ip`.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => forbidden_v4(ip),
        IpAddr::V6(ip) => {
            if let Some(v4) = ip.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            ip.is_unspecified()
                || ip.is_multicast()
                // fe80::/10, link-local unicast.
                || (ip.segments()[0] & 0xffc0) == 0xfe80
                // The EC2 metadata service over IPv6.
                || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    ip.is_link_local() || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()
}

/// The HTTP client's resolver: the system resolver, with forbidden addresses removed from
/// every answer (a name that resolves only to them fails to connect).
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found.filter(|a| !forbidden(a.ip())).collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves to no address webhooks may reach").into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_required_except_on_loopback() {
        assert!(check_url("https://hooks.example.com/in", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080/in", false).is_ok());
        assert!(check_url("http://[::1]:8080/in", false).is_ok());
        assert!(check_url("http://localhost/in", false).is_ok());
        assert_eq!(
            check_url("http://hooks.example.com/in", false),
            Err(TargetError::Scheme)
        );
        assert!(check_url("http://hooks.example.com/in", true).is_ok());
        assert_eq!(
            check_url("ftp://x.example/", true),
            Err(TargetError::Scheme)
        );
        assert_eq!(check_url("not a url", true), Err(TargetError::Invalid));
        assert_eq!(
            check_url("mailto:a@example.com", true),
            Err(TargetError::Invalid)
        );
    }

    #[test]
    fn metadata_and_link_local_addresses_are_refused() {
        for bad in [
            "https://169.254.169.254/latest/meta-data/",
            "http://169.254.169.254/",
            "https://169.254.1.1/",
            "https://0.0.0.0/",
            "https://[fe80::1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[fd00:ec2::254]/",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
            "https://metadata.google.internal/computeMetadata/v1/",
        ] {
            assert_eq!(
                check_url(bad, true),
                Err(TargetError::ForbiddenAddress),
                "{bad}"
            );
        }
        assert!(check_url("https://10.0.0.5/hook", false).is_ok());
    }

    #[test]
    fn credentials_and_fragments_are_refused() {
        assert_eq!(
            check_url("https://user:pw@hooks.example.com/", false),
            Err(TargetError::Credentials)
        );
        assert_eq!(
            check_url("https://hooks.example.com/#x", false),
            Err(TargetError::Fragment)
        );
    }

    #[tokio::test]
    async fn the_resolver_drops_forbidden_answers() {
        let name: Name = "localhost".parse().expect("name");
        let found: Vec<SocketAddr> = GuardedResolver
            .resolve(name)
            .await
            .expect("resolves")
            .collect();
        assert!(!found.is_empty());
        assert!(found.iter().all(|a| a.ip().is_loopback()));
        let metadata: Name = "169.254.169.254".parse().expect("name");
        assert!(GuardedResolver.resolve(metadata).await.is_err());
    }
}
