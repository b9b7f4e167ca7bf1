//! What a client presented to authenticate itself at the token, introspection, revocation, PAR
//! and device-authorization endpoints (RFC 6749 §2.3, RFC 7521 §4.2, RFC 7523 §2.2, OIDC Core
//! §9), before anything is looked up.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use trustgate_core::Secret;

use crate::error::OAuthError;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest accepted `Authorization` header value, client id or secret (bytes).
pub const MAX_CREDENTIAL_BYTES: usize = 4096;

/// Longest accepted client assertion (a signed JWT; bytes).
pub const MAX_ASSERTION_BYTES: usize = 16 * 1024;

/// The credentials one request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresentedCredentials {
    /// `Authorization: Basic` (`client_secret_basic`), both parts already form-url-decoded.
    Basic {
        /// The client id.
        client_id: String,
        /// The client secret.
        secret: Secret,
    },
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post {
        /// The client id.
        client_id: String,
        /// The client secret.
        secret: Secret,
    },
    /// `client_assertion_type` and `client_assertion` in the form body (`private_key_jwt`).
    Assertion {
        /// The form's `client_id`, if sent (then it must equal the assertion's `iss`/`sub`).
        client_id: Option<String>,
        /// `client_assertion_type`.
        assertion_type: String,
        /// `client_assertion` (a compact JWS).
        assertion: String,
    },
    /// Only `client_id` in the form body (a public client, method `none`).
    None {
        /// The client id.
        client_id: String,
    },
    /// Only `client_id` in the form body, over mutual TLS (`tls_client_auth` and
    /// `self_signed_tls_client_auth`, RFC 8705 §2; or a public client over mutual TLS).
    Certificate {
        /// The client id.
        client_id: String,
        /// What the certificate names.
        certificate: ClientCertificate,
    },
}

/// What a client certificate names, as the transport read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject DN, RFC 4514.
    pub subject_dn: String,
    /// Its URI SANs.
    pub san_uris: Vec<String>,
    /// Its DNS name SANs.
    pub san_dns: Vec<String>,
    /// Its IP address SANs.
    pub san_ips: Vec<IpAddr>,
    /// Its email SANs (`rfc822Name`).
    pub san_emails: Vec<String>,
    /// `x5t#S256`: base64url of the SHA-256 of the DER.
    pub thumbprint: String,
    /// The listener verified the chain to a CA it trusts. Only such a certificate's names
    /// authenticate (`tls_client_auth`); a self-signed one is matched whole
    /// (`self_signed_tls_client_auth`).
    pub chain_trusted: bool,
}

/// The certificate name a `tls_client_auth` client registered (RFC 8705 §2.1.2): exactly one
/// of these is set for such a client, none for any other. Serialized as the RFC's flat client
/// metadata names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsClientAuthNames {
    /// The subject DN (RFC 4514), compared as a string.
    #[serde(
        rename = "tls_client_auth_subject_dn",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub subject_dn: Option<String>,
    /// A `dNSName` SAN, compared without regard to ASCII case.
    #[serde(
        rename = "tls_client_auth_san_dns",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub san_dns: Option<String>,
    /// A URI SAN (a SPIFFE ID, say), compared as a string.
    #[serde(
        rename = "tls_client_auth_san_uri",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub san_uri: Option<String>,
    /// An `iPAddress` SAN, written in dotted decimal or RFC 5952 form and compared as an
    /// address.
    #[serde(
        rename = "tls_client_auth_san_ip",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub san_ip: Option<String>,
    /// An `rfc822Name` SAN, compared as a string.
    #[serde(
        rename = "tls_client_auth_san_email",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub san_email: Option<String>,
}

impl TlsClientAuthNames {
    /// The names set, with their metadata names.
    pub fn named(&self) -> Vec<(&'static str, &str)> {
        [
            ("tls_client_auth_subject_dn", &self.subject_dn),
            ("tls_client_auth_san_dns", &self.san_dns),
            ("tls_client_auth_san_uri", &self.san_uri),
            ("tls_client_auth_san_ip", &self.san_ip),
            ("tls_client_auth_san_email", &self.san_email),
        ]
        .into_iter()
        .filter_map(|(field, value)| value.as_deref().map(|v| (field, v)))
        .collect()
    }

    /// RFC 8705 §2.1.2: the certificate chains to a trusted CA and has the registered name.
    pub fn matches(&self, certificate: &ClientCertificate) -> bool {
        let named = match self.named().as_slice() {
            [(_, one)] => *one,
            _ => return false,
        };
        certificate.chain_trusted
            && if self.subject_dn.is_some() {
                named == certificate.subject_dn
            } else if self.san_dns.is_some() {
                certificate
                    .san_dns
                    .iter()
                    .any(|dns| dns.eq_ignore_ascii_case(named))
            } else if self.san_uri.is_some() {
                certificate.san_uris.iter().any(|uri| uri == named)
            } else if self.san_ip.is_some() {
                named
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| certificate.san_ips.contains(&ip))
            } else {
                certificate.san_emails.iter().any(|email| email == named)
            }
    }
}

impl PresentedCredentials {
    /// These credentials, over mutual TLS with `certificate`: only the client id form
    /// (`None`) becomes [`PresentedCredentials::Certificate`]; a secret or an assertion stays
    /// what authenticates.
    pub fn over_mutual_tls(self, certificate: ClientCertificate) -> Self {
        match self {
            PresentedCredentials::None { client_id } => PresentedCredentials::Certificate {
                client_id,
                certificate,
            },
            other => other,
        }
    }
}

impl PresentedCredentials {
    /// The client id the request claims, when it names one outside an assertion.
    pub fn claimed_client_id(&self) -> Option<&str> {
        match self {
            PresentedCredentials::Basic { client_id, .. }
            | PresentedCredentials::Post { client_id, .. }
            | PresentedCredentials::None { client_id }
            | PresentedCredentials::Certificate { client_id, .. } => Some(client_id),
            PresentedCredentials::Assertion { client_id, .. } => client_id.as_deref(),
        }
    }

    /// The spelling of the method presented, as registered methods are spelled.
    pub fn method_name(&self) -> &'static str {
        match self {
            PresentedCredentials::Basic { .. } => "client_secret_basic",
            PresentedCredentials::Post { .. } => "client_secret_post",
            PresentedCredentials::Assertion { .. } => "private_key_jwt",
            PresentedCredentials::None { .. } => "none",
            PresentedCredentials::Certificate { certificate, .. } if certificate.chain_trusted => {
                "tls_client_auth"
            }
            PresentedCredentials::Certificate { .. } => "self_signed_tls_client_auth",
        }
    }
}

/// Decodes an `Authorization: Basic` header value into client id and secret.
///
/// RFC 6749 §2.3.1: the client id and secret are each encoded with
/// `application/x-www-form-urlencoded` *before* being joined by `:` and base64-encoded, so a
/// `:` inside an id is `%3A` and a space may be `+`. This undoes both steps. Anything malformed
/// (another scheme, bad base64, no `:`, bad percent-escape, not UTF-8, empty id, too long) is
/// `invalid_client`: the request carried client authentication that does not work.
pub fn parse_basic_authorization(header_value: &str) -> Result<(String, Secret), OAuthError> {
    let malformed = || OAuthError::invalid_client("malformed Basic client credentials");
    if header_value.len() > MAX_CREDENTIAL_BYTES {
        return Err(malformed());
    }
    let (scheme, encoded) = header_value
        .trim()
        .split_once(' ')
        .ok_or_else(|| OAuthError::invalid_client("unsupported authorization scheme"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "unsupported authorization scheme (use Basic)",
        ));
    }
    let decoded = STANDARD
        .decode(encoded.trim_start())
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    let id = form_url_decode(id).ok_or_else(malformed)?;
    let secret = form_url_decode(secret).ok_or_else(malformed)?;
    if id.is_empty() {
        return Err(malformed());
    }
    Ok((id, Secret::new(secret)))
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space, `%XX` a byte;
/// `None` for a `%` not followed by two hex digits or a result that is not UTF-8.
fn form_url_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Turns the `Authorization` header (if any) and the form fields into [`PresentedCredentials`].
///
/// `form(name)` returns the value of one form parameter. The caller has already refused
/// requests that repeat a parameter (RFC 6749 §3.2); an empty value counts as absent (RFC 6749
/// §3.1). `authorization` is the raw header value; only the `Basic` scheme is client
/// authentication.
///
/// - More than one method in one request (Basic and a form secret, a secret and an assertion)
///   is `invalid_request` (RFC 6749 §2.3).
/// - No method and no `client_id` at all is `invalid_client`.
/// - A `client_id` in the form that differs from the Basic one is `invalid_request`.
/// - Half an assertion (type without assertion or the reverse), or a form secret without a
///   `client_id`, is `invalid_request`.
pub fn presented_credentials(
    authorization: Option<&str>,
    form: &impl Fn(&str) -> Option<String>,
) -> Result<PresentedCredentials, OAuthError> {
    let field = |name: &str| form(name).filter(|v| !v.is_empty());
    let client_id = field("client_id");
    let secret = field("client_secret");
    let assertion = field("client_assertion");
    let assertion_type = field("client_assertion_type");
    let basic = authorization
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(parse_basic_authorization)
        .transpose()?;

    let methods = usize::from(basic.is_some())
        + usize::from(secret.is_some())
        + usize::from(assertion.is_some() || assertion_type.is_some());
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "more than one client authentication method in one request",
        ));
    }
    if let Some(id) = &client_id
        && id.len() > MAX_CREDENTIAL_BYTES
    {
        return Err(OAuthError::invalid_client("client_id is too long"));
    }
    if let Some((basic_id, secret)) = basic {
        if client_id.as_ref().is_some_and(|id| *id != basic_id) {
            return Err(OAuthError::invalid_request(
                "client_id does not match the Basic credentials",
            ));
        }
        return Ok(PresentedCredentials::Basic {
            client_id: basic_id,
            secret,
        });
    }
    if let Some(secret) = secret {
        let client_id = client_id.ok_or_else(|| {
            OAuthError::invalid_request("client_secret was sent without client_id")
        })?;
        if secret.len() > MAX_CREDENTIAL_BYTES {
            return Err(OAuthError::invalid_client("client_secret is too long"));
        }
        return Ok(PresentedCredentials::Post {
            client_id,
            secret: Secret::new(secret),
        });
    }
    match (assertion_type, assertion) {
        (Some(assertion_type), Some(assertion)) => {
            if assertion.len() > MAX_ASSERTION_BYTES {
                return Err(OAuthError::invalid_client("client_assertion is too long"));
            }
            Ok(PresentedCredentials::Assertion {
                client_id,
                assertion_type,
                assertion,
            })
        }
        (Some(_), None) => Err(OAuthError::invalid_request(
            "client_assertion_type was sent without client_assertion",
        )),
        (None, Some(_)) => Err(OAuthError::invalid_request(
            "client_assertion was sent without client_assertion_type",
        )),
        (None, None) => match client_id {
            Some(client_id) => Ok(PresentedCredentials::None { client_id }),
            None => Err(OAuthError::invalid_client(
                "client authentication is required",
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ErrorCode;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    fn form<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        move |name| map.get(name).map(|v| (*v).to_owned())
    }

    #[test]
    fn basic_header_is_base64_then_form_url_decoded() {
        let (id, secret) = parse_basic_authorization(&basic("tgc_abc", "tgcs_s3cret")).expect("ok");
        assert_eq!(id, "tgc_abc");
        assert_eq!(secret.expose(), "tgcs_s3cret");
        // RFC 6749 §2.3.1: a ':' in the id is %3A, '+' is a space, %XX any byte (UTF-8).
        let (id, secret) =
            parse_basic_authorization(&basic("a%3Ab+c", "p%40ss+w%C3%B6rd%3A")).expect("ok");
        assert_eq!(id, "a:b c");
        assert_eq!(secret.expose(), "p@ss wörd:");
        // The scheme is case-insensitive; an empty secret parses (and will not authenticate).
        let lower = basic("x", "").replacen("Basic", "bAsIc", 1);
        let (id, secret) = parse_basic_authorization(&lower).expect("ok");
        assert_eq!((id.as_str(), secret.expose()), ("x", ""));
        // The secret may contain further colons.
        let (_, secret) = parse_basic_authorization(&basic("x", "a:b")).expect("ok");
        assert_eq!(secret.expose(), "a:b");
    }

    #[test]
    fn malformed_basic_headers_are_invalid_client() {
        for header in [
            "Basic".to_owned(),
            "Bearer abc".to_owned(),
            "Basic !!!notbase64".to_owned(),
            format!("Basic {}", STANDARD.encode("no-colon")),
            format!("Basic {}", STANDARD.encode(":secret")),
            basic("bad%zzescape", "x"),
            basic("x", "trailing%4"),
            basic("x", "%FF%FE"),
            format!("Basic {}", STANDARD.encode([0xFFu8, b':', b'a'])),
            format!("Basic {}", "A".repeat(MAX_CREDENTIAL_BYTES)),
        ] {
            let err = parse_basic_authorization(&header).expect_err(&header);
            assert_eq!(err.code, ErrorCode::InvalidClient, "{header}");
        }
    }

    #[test]
    fn each_method_is_recognised() {
        let got = presented_credentials(Some(&basic("c1", "s1")), &form(&[])).expect("basic");
        assert!(
            matches!(&got, PresentedCredentials::Basic { client_id, secret } if client_id == "c1" && secret.expose() == "s1")
        );
        assert_eq!(got.method_name(), "client_secret_basic");
        // The same client_id in the form as in Basic is fine.
        presented_credentials(Some(&basic("c1", "s1")), &form(&[("client_id", "c1")]))
            .expect("same id");

        let got =
            presented_credentials(None, &form(&[("client_id", "c2"), ("client_secret", "s2")]))
                .expect("post");
        assert!(
            matches!(&got, PresentedCredentials::Post { client_id, secret } if client_id == "c2" && secret.expose() == "s2")
        );

        let got = presented_credentials(
            None,
            &form(&[
                ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
                ("client_assertion", "a.b.c"),
            ]),
        )
        .expect("assertion");
        assert_eq!(
            got,
            PresentedCredentials::Assertion {
                client_id: None,
                assertion_type: JWT_BEARER_ASSERTION_TYPE.into(),
                assertion: "a.b.c".into(),
            }
        );
        assert_eq!(got.claimed_client_id(), None);

        let got = presented_credentials(None, &form(&[("client_id", "pub")])).expect("none");
        assert_eq!(
            got,
            PresentedCredentials::None {
                client_id: "pub".into()
            }
        );
        assert_eq!(got.claimed_client_id(), Some("pub"));
    }

    #[test]
    fn two_methods_are_invalid_request_and_none_is_invalid_client() {
        let both = [
            (
                Some(basic("c", "s")),
                vec![("client_id", "c"), ("client_secret", "s")],
            ),
            (
                Some(basic("c", "s")),
                vec![
                    ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
                    ("client_assertion", "a.b.c"),
                ],
            ),
            (
                None,
                vec![
                    ("client_id", "c"),
                    ("client_secret", "s"),
                    ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
                    ("client_assertion", "a.b.c"),
                ],
            ),
        ];
        for (header, pairs) in &both {
            let err = presented_credentials(header.as_deref(), &form(pairs)).expect_err("two");
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{pairs:?}");
        }
        let err = presented_credentials(None, &form(&[])).expect_err("nothing");
        assert_eq!(err.code, ErrorCode::InvalidClient);
        // Empty parameters count as absent (RFC 6749 §3.1).
        let err = presented_credentials(None, &form(&[("client_id", ""), ("client_secret", "")]))
            .expect_err("empty");
        assert_eq!(err.code, ErrorCode::InvalidClient);
        let err = presented_credentials(Some(""), &form(&[])).expect_err("empty header");
        assert_eq!(err.code, ErrorCode::InvalidClient);
    }

    #[test]
    fn inconsistent_or_partial_credentials_are_refused() {
        type Case<'a> = (Option<String>, Vec<(&'a str, &'a str)>, ErrorCode);
        let cases: [Case<'_>; 5] = [
            (
                Some(basic("c1", "s")),
                vec![("client_id", "c2")],
                ErrorCode::InvalidRequest,
            ),
            (
                None,
                vec![("client_secret", "s")],
                ErrorCode::InvalidRequest,
            ),
            (
                None,
                vec![("client_assertion_type", JWT_BEARER_ASSERTION_TYPE)],
                ErrorCode::InvalidRequest,
            ),
            (
                None,
                vec![("client_assertion", "a.b.c")],
                ErrorCode::InvalidRequest,
            ),
            (
                Some("Bearer token".into()),
                vec![("client_id", "c")],
                ErrorCode::InvalidClient,
            ),
        ];
        for (header, pairs, code) in &cases {
            let err = presented_credentials(header.as_deref(), &form(pairs)).expect_err("refused");
            assert_eq!(err.code, *code, "{header:?} {pairs:?}");
        }
        let long = "x".repeat(MAX_ASSERTION_BYTES + 1);
        let err = presented_credentials(
            None,
            &form(&[
                ("client_assertion_type", JWT_BEARER_ASSERTION_TYPE),
                ("client_assertion", &long),
            ]),
        )
        .expect_err("long");
        assert_eq!(err.code, ErrorCode::InvalidClient);
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let got =
            presented_credentials(Some(&basic("c", "hunter2-secret")), &form(&[])).expect("basic");
        assert!(!format!("{got:?}").contains("hunter2"));
    }
}
