//! Client addresses: as limits count them ([`client_network`]), and as a request's client is
//! known behind trusted reverse proxies ([`TrustedProxies`]).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// The network a client address counts as for a limit (a throttle, a connection cap): an IPv4
/// address as is, also when mapped into IPv6; an IPv6 address by its /64, since one subscriber
/// usually holds a whole /64 and could otherwise use a new address per attempt.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = v6.to_bits() & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from_bits(prefix))
        }
    }
}

/// An address prefix: `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.7`, a /32 or
/// /128). Addresses are compared in canonical form, so an IPv4 address mapped into IPv6
/// matches an IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    bits: u8,
}

/// Why a prefix does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an address or prefix (e.g. 10.0.0.0/8, 2001:db8::/32, 192.0.2.7)",
            self.0
        )
    }
}

impl std::error::Error for CidrError {}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || CidrError(text.chars().take(64).collect());
        let (address, bits) = match text.split_once('/') {
            Some((address, bits)) => {
                // Digits only: no sign, no spaces, no leading `+`.
                if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(error());
                }
                (address, Some(bits.parse::<u8>().map_err(|_| error())?))
            }
            None => (text, None),
        };
        let network = address
            .parse::<IpAddr>()
            .map_err(|_| error())?
            .to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(error());
        }
        Ok(Cidr { network, bits })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.bits)
    }
}

impl Cidr {
    /// Whether `ip` is inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                network.to_bits() & mask == ip.to_bits() & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                network.to_bits() & mask == ip.to_bits() & mask
            }
            _ => false,
        }
    }
}

/// The most forwarding entries kept from a request, counted from the right (entries further
/// left are never reached: the walk starts at the nearest proxy and takes at most `hops` steps).
const MAX_FORWARDED_ENTRIES: usize = 64;

/// Which reverse proxies are believed about the client, and how many of them stand in a row
/// in front of the server.
///
/// A request's `Forwarded` (RFC 7239) or `X-Forwarded-For` / `X-Forwarded-Proto` headers are
/// read only when the connection comes from a trusted proxy; a client that connects directly
/// could otherwise write any address into them. The list is walked from the right (the entry
/// the nearest proxy appended) towards the client: each entry that is itself a trusted proxy
/// is passed over, at most `hops` proxies in all (the peer included), and the first other entry
/// is the client. Entries further left were written by whoever sent the request to the
/// outermost proxy and are never believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    proxies: Vec<Cidr>,
    hops: usize,
}

/// The client of a request as the trusted proxies (if any) tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardedClient {
    /// The client's address: the peer's when no trusted proxy forwarded the request.
    pub ip: IpAddr,
    /// Whether the client's request arrived over HTTPS: the connection's own scheme, or the
    /// one the trusted proxy that met the client reported.
    pub https: bool,
}

impl TrustedProxies {
    /// `proxies` are believed, for at most `hops` proxies in a row (at least 1).
    pub fn new(proxies: Vec<Cidr>, hops: usize) -> Self {
        TrustedProxies {
            proxies,
            hops: hops.max(1),
        }
    }

    /// `entries` (addresses or prefixes, as configured) parsed, for at most `hops` proxies in a
    /// row; the first entry that does not parse is the error.
    pub fn parse(entries: &[String], hops: usize) -> Result<Self, CidrError> {
        let proxies = entries
            .iter()
            .map(|entry| entry.parse::<Cidr>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(proxies, hops))
    }

    /// Whether any proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.proxies.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|p| p.contains(ip))
    }

    /// The client of a request that came from `peer` over a connection that is (`tls`) or is not
    /// encrypted, with the values of its `Forwarded` headers (`forwarded`, in order) and else its
    /// `X-Forwarded-For` and `X-Forwarded-Proto` headers. An entry that does not parse stops
    /// the walk: the proxy before it is then taken as the client, never a guess.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        tls: bool,
        forwarded: impl Iterator<Item = &'a str>,
        x_forwarded_for: impl Iterator<Item = &'a str>,
        x_forwarded_proto: impl Iterator<Item = &'a str>,
    ) -> ForwardedClient {
        let direct = ForwardedClient {
            ip: peer,
            https: tls,
        };
        if !self.trusts(peer) {
            return direct;
        }
        // (address as written, proto) per hop, left (client) to right (nearest proxy).
        // Only the entries nearest the server can matter (the walk takes at most `hops` steps
        // from the right), and those are the ones the trusted proxies wrote: everything to their
        // left may be the client's own, so a long list is cut from the left, never the right.
        let nearest = |values: &mut dyn Iterator<Item = &'a str>| -> (Vec<&'a str>, usize) {
            let all: Vec<&str> = values.flat_map(|value| value.split(',')).collect();
            let total = all.len();
            let keep = all[total.saturating_sub(MAX_FORWARDED_ENTRIES)..].to_vec();
            (keep, total)
        };
        let (elements, _) = nearest(&mut { forwarded });
        let mut hops: Vec<(Option<IpAddr>, Option<bool>)> =
            elements.into_iter().map(parse_forwarded_element).collect();
        if hops.is_empty() {
            let (protos, proto_total) = nearest(&mut { x_forwarded_proto });
            let protos: Vec<Option<bool>> = protos.iter().map(|p| parse_proto(p.trim())).collect();
            let (entries, entry_total) = nearest(&mut { x_forwarded_for });
            hops = entries
                .iter()
                .map(|entry| (parse_node(entry.trim()), None))
                .collect();
            // The scheme the nearest proxy reported (a proxy that overwrites the header leaves
            // one value), or per hop when every proxy appends to both headers alike.
            let nearest_proto = protos.last().copied().flatten();
            if hops.is_empty() {
                return ForwardedClient {
                    ip: peer,
                    https: nearest_proto.unwrap_or(tls),
                };
            }
            if proto_total == entry_total {
                for (hop, proto) in hops.iter_mut().zip(protos) {
                    hop.1 = proto;
                }
            } else if let Some(proto) = nearest_proto {
                for hop in &mut hops {
                    hop.1 = Some(proto);
                }
            }
        }
        // Walk from the nearest proxy: the peer is the first trusted hop.
        let mut client = direct;
        for (trusted, (ip, proto)) in (1..).zip(hops.iter().rev()) {
            let Some(ip) = *ip else { break };
            client = ForwardedClient {
                ip,
                https: proto.unwrap_or(client.https),
            };
            if !self.trusts(ip) || trusted >= self.hops {
                break;
            }
        }
        client
    }
}

/// One `Forwarded` element (`for=192.0.2.60;proto=https;by=...`): its `for` address and `proto`.
fn parse_forwarded_element(element: &str) -> (Option<IpAddr>, Option<bool>) {
    let mut ip = None;
    let mut proto = None;
    for pair in element.split(';') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match name.trim().to_ascii_lowercase().as_str() {
            "for" => ip = parse_node(value),
            "proto" => proto = parse_proto(value),
            _ => {}
        }
    }
    (ip, proto)
}

/// A node as proxies write it: `192.0.2.60`, `192.0.2.60:4711`, `[2001:db8::1]` or
/// `[2001:db8::1]:4711`, or a bare IPv6 address (X-Forwarded-For). `unknown` and obfuscated
/// identifiers (`_hidden`) are no address.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (address, _) = rest.split_once(']')?;
        return address.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (address, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn parse_proto(proto: &str) -> Option<bool> {
    match proto.to_ascii_lowercase().as_str() {
        "https" | "wss" => Some(true),
        "http" | "ws" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn proxies(list: &[&str], hops: usize) -> TrustedProxies {
        TrustedProxies::new(
            list.iter().map(|c| c.parse().expect("cidr")).collect(),
            hops,
        )
    }

    fn xff(t: &TrustedProxies, peer: &str, xff: &[&str], proto: &[&str]) -> ForwardedClient {
        t.client(
            ip(peer),
            false,
            std::iter::empty(),
            xff.iter().copied(),
            proto.iter().copied(),
        )
    }

    #[test]
    fn cidrs_parse_strictly_and_match_canonically() {
        let ten: Cidr = "10.0.0.0/8".parse().expect("v4");
        assert!(ten.contains(ip("10.200.1.1")));
        assert!(ten.contains(ip("::ffff:10.0.0.1")), "mapped v4");
        assert!(!ten.contains(ip("11.0.0.1")));
        assert!(!ten.contains(ip("::a00:1")), "v6 that is not mapped");
        let one: Cidr = "192.0.2.7".parse().expect("one address");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: Cidr = "2001:db8::/32".parse().expect("v6");
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("all v4");
        assert!(all.contains(ip("203.0.113.9")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "host",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_are_ignored_from_an_untrusted_peer() {
        let t = proxies(&["10.0.0.0/8"], 1);
        let c = xff(&t, "203.0.113.5", &["198.51.100.1"], &["https"]);
        assert_eq!((c.ip, c.https), (ip("203.0.113.5"), false));
        // No proxy configured: never believed either.
        let none = TrustedProxies::default();
        assert!(none.is_empty());
        let c = xff(&none, "10.0.0.1", &["198.51.100.1"], &["https"]);
        assert_eq!(c.ip, ip("10.0.0.1"));
    }

    #[test]
    fn the_client_is_counted_from_the_right_and_spoofed_entries_stay_unbelieved() {
        let t = proxies(&["10.0.0.0/8"], 1);
        // The client wrote 1.2.3.4 itself; the proxy appended the real address.
        let c = xff(&t, "10.0.0.1", &["1.2.3.4, 198.51.100.1"], &["https"]);
        assert_eq!((c.ip, c.https), (ip("198.51.100.1"), true));
        // Two proxies in a row, both trusted, hops = 2.
        let two = proxies(&["10.0.0.0/8"], 2);
        let c = xff(
            &two,
            "10.0.0.1",
            &["1.2.3.4", "198.51.100.1, 10.0.0.2"],
            &[],
        );
        assert_eq!(c.ip, ip("198.51.100.1"));
        // hops = 1 with two proxies: the inner proxy's view (the outer proxy) is the client.
        let c = xff(&t, "10.0.0.1", &["198.51.100.1, 10.0.0.2"], &[]);
        assert_eq!(c.ip, ip("10.0.0.2"));
        // A client that sends a long list cannot push the proxy's entry out of reach.
        let padded = vec!["6.6.6.6"; 200].join(", ") + ", 198.51.100.9";
        let c = xff(&t, "10.0.0.1", &[padded.as_str()], &[]);
        assert_eq!(c.ip, ip("198.51.100.9"));
        // Nor make its own scheme the one believed: the nearest proxy's value counts.
        let c = xff(&t, "10.0.0.1", &["198.51.100.9"], &["https, http"]);
        assert!(!c.https);
        // A garbage entry stops the walk at the proxy before it.
        let c = xff(&two, "10.0.0.1", &["198.51.100.1, garbage"], &[]);
        assert_eq!(c.ip, ip("10.0.0.1"));
        // A trusted peer without headers is the client; with only a scheme, it said how the
        // client came.
        let c = xff(&t, "10.0.0.1", &[], &[]);
        assert_eq!((c.ip, c.https), (ip("10.0.0.1"), false));
        let c = xff(&t, "10.0.0.1", &[], &["https"]);
        assert_eq!((c.ip, c.https), (ip("10.0.0.1"), true));
    }

    #[test]
    fn rfc_7239_forwarded_wins_and_carries_proto_per_hop() {
        let t = proxies(&["10.0.0.0/8"], 2);
        let c = t.client(
            ip("10.0.0.1"),
            false,
            [
                r#"for="_hidden", for=198.51.100.17;proto=https;by=10.0.0.2"#,
                r#"for="[2001:db8:cafe::17]:4711";proto=http"#,
            ]
            .into_iter(),
            ["9.9.9.9"].into_iter(),
            ["https"].into_iter(),
        );
        assert_eq!(
            (c.ip, c.https),
            (ip("2001:db8:cafe::17"), false),
            "nearest hop"
        );
        let c = t.client(
            ip("10.0.0.1"),
            false,
            ["for=198.51.100.17;proto=https, for=10.0.0.9:80;proto=http"].into_iter(),
            std::iter::empty(),
            std::iter::empty(),
        );
        assert_eq!((c.ip, c.https), (ip("198.51.100.17"), true));
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node("192.0.2.1:8080"), Some(ip("192.0.2.1")));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::7".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::7".parse().expect("ip");
        assert_eq!(client_network(a), client_network(b));
        assert_ne!(client_network(a), client_network(c));
        assert_eq!(
            client_network(a),
            "2001:db8:1:2::".parse::<IpAddr>().expect("ip")
        );
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        let v4: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(client_network(mapped), v4);
        assert_eq!(client_network(v4), v4);
    }
}
