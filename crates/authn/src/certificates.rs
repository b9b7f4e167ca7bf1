//! Client certificates (mutual TLS) as identities: what a verified certificate names.
//!
//! The listener has already checked the chain, the validity period and revocation
//! (`trustgate_listener::mtls`); this module only reads the end-entity certificate
//! (x509-parser, no signature work) and says who it names, three ways:
//!
//! - the SPIFFE ID: the one URI SAN with the `spiffe` scheme (SPIFFE X.509-SVID §2). A
//!   certificate with several, or with one that breaks the SPIFFE ID rules (trust domain of
//!   lowercase letters, digits, `.`, `-` and `_`; path segments of letters, digits, `.`, `-`
//!   and `_`, none empty, `.` or `..`; no port, user info, query or fragment; at most 2048
//!   bytes), has none;
//! - the subject DN as an RFC 4514 string: the RDNs last to first, `,` between them, `+`
//!   inside a multi-valued RDN, attribute types by their RFC 4514 short names (`CN`, `O`,
//!   `OU`, `C`, `L`, `ST`, `STREET`, `DC`, `UID`) or dotted OIDs, values escaped per §2.4
//!   (values that are not strings are `#` and the hex of their DER);
//! - the SHA-256 thumbprint of the DER, base64url: RFC 8705's `x5t#S256`.
//!
//! [`CertificateAccounts`] turns an identity into a principal: the service account its SPIFFE
//! ID is bound to, else the one its subject DN is bound to (bindings are stored per account,
//! `ServiceAccountStore::bind_certificate`). A certificate bound to no account is still
//! authenticated — the listener verified it — as `service:x509-<thumbprint>`, a principal no
//! role names, so it may do nothing; one bound to a disabled account authenticates nothing.

use std::net::IpAddr;
use std::sync::Arc;

use trustgate_core::Principal;
use trustgate_store_api::{CertificateNameKind, ServiceAccountStore, StoreError};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

/// The longest SPIFFE ID accepted (SPIFFE ID §2.3).
pub const MAX_SPIFFE_ID_BYTES: usize = 2048;
/// Certificates larger than this are not read.
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// Who a client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateIdentity {
    /// The SPIFFE ID, if the certificate is an X.509-SVID.
    pub spiffe_id: Option<String>,
    /// The subject, RFC 4514.
    pub subject_dn: String,
    /// Every URI SAN (the SPIFFE ID among them), in the certificate's order.
    pub uris: Vec<String>,
    /// Every DNS name SAN (`dNSName`), in the certificate's order.
    pub dns_names: Vec<String>,
    /// Every IP address SAN (`iPAddress`; an entry that is not 4 or 16 bytes is skipped).
    pub ip_addresses: Vec<IpAddr>,
    /// Every email SAN (`rfc822Name`), in the certificate's order.
    pub emails: Vec<String>,
    /// `x5t#S256`: base64url of the SHA-256 of the DER.
    pub thumbprint: String,
}

/// Why a certificate names nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// Not a DER X.509 certificate (or larger than [`MAX_CERTIFICATE_BYTES`]).
    #[error("the client certificate cannot be read")]
    Malformed,
}

/// What `der` (a verified end-entity certificate) names.
pub fn identify(der: &[u8]) -> Result<CertificateIdentity, CertificateError> {
    if der.len() > MAX_CERTIFICATE_BYTES {
        return Err(CertificateError::Malformed);
    }
    let (rest, certificate) =
        X509Certificate::from_der(der).map_err(|_| CertificateError::Malformed)?;
    if !rest.is_empty() {
        return Err(CertificateError::Malformed);
    }
    let (mut uris, mut dns_names, mut emails) = (Vec::new(), Vec::new(), Vec::new());
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = certificate.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                GeneralName::RFC822Name(email) => emails.push((*email).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_address(bytes) {
                        ip_addresses.push(ip);
                    }
                }
                _ => {}
            }
        }
    }
    let spiffe: Vec<&str> = uris
        .iter()
        .map(String::as_str)
        .filter(|uri| uri.len() >= 9 && uri[..9].eq_ignore_ascii_case("spiffe://"))
        .collect();
    let spiffe_id = match spiffe.as_slice() {
        [one] if is_spiffe_id(one) => Some((*one).to_owned()),
        _ => None,
    };
    Ok(CertificateIdentity {
        spiffe_id,
        subject_dn: rfc4514(certificate.subject()),
        uris,
        dns_names,
        ip_addresses,
        emails,
        thumbprint: thumbprint(der),
    })
}

/// An `iPAddress` SAN: 4 bytes for IPv4, 16 for IPv6 (RFC 5280 §4.2.1.6).
fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Who a verified client certificate is, for the machine APIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateCaller {
    /// The service account a name of the certificate is bound to.
    Account(Principal),
    /// No account: authenticated, with no permissions (`service:x509-<thumbprint>`, named by
    /// the subject DN).
    Unbound(Principal),
    /// The account it is bound to is disabled: not authenticated.
    Disabled,
}

/// Resolves certificate identities to service accounts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CertificateAccounts {
    store: Arc<dyn ServiceAccountStore>,
}

impl CertificateAccounts {
    /// Over the service account store.
    pub fn new(store: Arc<dyn ServiceAccountStore>) -> Self {
        CertificateAccounts { store }
    }

    /// Who the certificate is: its SPIFFE ID's account, else its subject DN's, else unbound.
    pub async fn resolve(
        &self,
        identity: &CertificateIdentity,
    ) -> Result<CertificateCaller, StoreError> {
        let mut account = None;
        if let Some(spiffe_id) = &identity.spiffe_id {
            account = self
                .store
                .certificate_account(CertificateNameKind::SpiffeId, spiffe_id)
                .await?;
        }
        if account.is_none() && !identity.subject_dn.is_empty() {
            account = self
                .store
                .certificate_account(CertificateNameKind::SubjectDn, &identity.subject_dn)
                .await?;
        }
        Ok(match account {
            Some(account) if account.disabled_at.is_some() => CertificateCaller::Disabled,
            Some(account) => {
                CertificateCaller::Account(Principal::service(account.id, account.name))
            }
            None => CertificateCaller::Unbound(Principal::service(
                format!("x509-{}", identity.thumbprint),
                if identity.subject_dn.is_empty() {
                    identity.thumbprint.clone()
                } else {
                    identity.subject_dn.clone()
                },
            )),
        })
    }
}

/// `x5t#S256` of a DER certificate (RFC 8705 §3.1).
pub fn thumbprint(der: &[u8]) -> String {
    trustgate_tokens::Confirmation::certificate_thumbprint(der)
}

/// Whether `uri` is a SPIFFE ID (SPIFFE ID §2): `spiffe://`, a trust domain, and a path.
pub fn is_spiffe_id(uri: &str) -> bool {
    if uri.len() > MAX_SPIFFE_ID_BYTES {
        return false;
    }
    let Some(rest) = uri.strip_prefix("spiffe://") else {
        return false;
    };
    let (domain, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let domain_ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    let path_ok = path.is_empty()
        || path[1..].split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        });
    domain_ok && path_ok
}

/// The RFC 4514 string of a distinguished name.
fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = attribute.attr_type().to_id_string();
                    let short = short_name(&oid);
                    let value = match (short, attribute.as_str()) {
                        (Some(_), Ok(text)) => escape(text),
                        _ => format!("#{}", hex(attribute.attr_value().data)),
                    };
                    format!("{}={value}", short.unwrap_or(&oid))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 4514 §3's attribute type names.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 4514 §2.4: `"`, `+`, `,`, `;`, `<`, `>` and `\` anywhere, `#` or a space first, a space
/// last, and NUL escaped with a backslash (NUL as `\00`).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_follow_the_spiffe_rules() {
        for good in [
            "spiffe://example.org/ns/prod/sa/billing",
            "spiffe://example.org",
            "spiffe://a-b.c_d/Path.With-All_kinds",
        ] {
            assert!(is_spiffe_id(good), "{good}");
        }
        for bad in [
            "spiffe://Example.org/x",
            "spiffe://example.org:8443/x",
            "spiffe://user@example.org/x",
            "spiffe://example.org/",
            "spiffe://example.org//x",
            "spiffe://example.org/./x",
            "spiffe://example.org/../x",
            "spiffe://example.org/x?y=1",
            "spiffe://example.org/x#f",
            "spiffe:///x",
            "https://example.org/x",
            &format!("spiffe://example.org/{}", "a".repeat(MAX_SPIFFE_ID_BYTES)),
        ] {
            assert!(!is_spiffe_id(bad), "{bad}");
        }
    }

    #[test]
    fn values_are_escaped_per_rfc_4514() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape("#lead"), "\\#lead");
        assert_eq!(escape(" both "), "\\ both\\ ");
        assert_eq!(escape("in#side"), "in#side");
        assert_eq!(escape("q\"<>;\\"), "q\\\"\\<\\>\\;\\\\");
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(
            identify(b"not a certificate"),
            Err(CertificateError::Malformed)
        );
        assert_eq!(
            identify(&vec![0x30; MAX_CERTIFICATE_BYTES + 1]),
            Err(CertificateError::Malformed)
        );
    }
}
