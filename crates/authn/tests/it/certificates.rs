//! Client certificates made at run time (`testkit::tls::TestCa`) read back as identities: the
//! SPIFFE ID of an X.509-SVID, the RFC 4514 subject, the RFC 8705 thumbprint.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use trustgate_authn::certificates::identify;
use trustgate_testkit::tls::TestCa;

#[test]
fn a_client_certificate_names_its_spiffe_id_subject_and_thumbprint() {
    let ca = TestCa::new("clients");
    let svid = ca.client("billing", Some("spiffe://example.org/ns/prod/sa/billing"));
    let identity = identify(&svid.der).expect("reads");
    assert_eq!(
        identity.spiffe_id.as_deref(),
        Some("spiffe://example.org/ns/prod/sa/billing")
    );
    // RFC 4514 lists the RDNs last first: the certificate has CN, then O.
    assert_eq!(identity.subject_dn, "O=trustgate tests,CN=billing");
    assert_eq!(identity.uris, ["spiffe://example.org/ns/prod/sa/billing"]);
    assert_eq!(
        identity.thumbprint,
        URL_SAFE_NO_PAD.encode(Sha256::digest(&svid.der))
    );

    // Without a URI SAN, or with one that is not a SPIFFE ID: no SPIFFE ID, the DN stands.
    let plain = identify(&ca.client("reports", None).der).expect("reads");
    assert_eq!(plain.spiffe_id, None);
    assert_eq!(plain.subject_dn, "O=trustgate tests,CN=reports");
    let https = identify(&ca.client("web", Some("https://example.org/web")).der).expect("reads");
    assert_eq!(https.spiffe_id, None);
    let bad = identify(&ca.client("bad", Some("spiffe://Example.org/x")).der).expect("reads");
    assert_eq!(bad.spiffe_id, None, "upper case in the trust domain");
    // Special characters in a value are escaped.
    let odd = identify(&ca.client("a,b+c", None).der).expect("reads");
    assert_eq!(odd.subject_dn, "O=trustgate tests,CN=a\\,b\\+c");
}

#[test]
fn every_subject_alternative_name_kind_is_read() {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use trustgate_testkit::tls::San;

    let ca = TestCa::new("clients");
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    let cert = ca.client_with_names(
        "multi",
        &[
            San::Dns("api.example.com"),
            San::Uri("spiffe://example.org/api"),
            San::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
            San::Email("ops@example.com"),
            San::Dns("*.example.net"),
            San::Ip(v6),
        ],
    );
    let identity = identify(&cert.der).expect("reads");
    assert_eq!(identity.dns_names, ["api.example.com", "*.example.net"]);
    assert_eq!(identity.uris, ["spiffe://example.org/api"]);
    assert_eq!(
        identity.ip_addresses,
        [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), v6]
    );
    assert_eq!(identity.emails, ["ops@example.com"]);
    assert_eq!(
        identity.spiffe_id.as_deref(),
        Some("spiffe://example.org/api")
    );

    // None of them: empty lists, not errors.
    let bare = identify(&ca.client("bare", None).der).expect("reads");
    assert!(bare.dns_names.is_empty() && bare.ip_addresses.is_empty() && bare.emails.is_empty());
}
