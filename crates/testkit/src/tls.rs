//! Certificates made at run time for TLS tests: a CA, the server and client certificates it
//! signs, and its certificate revocation lists.

use std::net::{IpAddr, Ipv4Addr};

use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber, date_time_ymd,
};

/// A test CA (ECDSA P-256) that signs server and client certificates and CRLs.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    next_serial: AtomicU64,
    /// The CA certificate, DER.
    pub der: Vec<u8>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A server certificate and its key.
#[derive(Debug)]
pub struct ServerCertificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER (what a client sees).
    pub der: Vec<u8>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed");
        TestCa {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
            next_serial: AtomicU64::new(1),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1, with common name `cn`.
    pub fn server(&self, cn: &str) -> ServerCertificate {
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        ServerCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A client certificate (TLS client authentication) with common name `cn` and, when
    /// given, a URI SAN such as a SPIFFE ID (`spiffe://example.org/ns/prod/sa/billing`).
    pub fn client(&self, cn: &str, uri: Option<&str>) -> ClientCertificate {
        let sans: Vec<San<'_>> = uri.into_iter().map(San::Uri).collect();
        self.client_with_names(cn, &sans)
    }

    /// A client certificate with common name `cn` and these subject alternative names.
    pub fn client_with_names(&self, cn: &str, sans: &[San<'_>]) -> ClientCertificate {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let params = client_params(cn, sans, serial);
        let key = KeyPair::generate().expect("client key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        ClientCertificate::new(&cert, &key, serial)
    }

    /// A client certificate that expired in 2001.
    pub fn expired_client(&self, cn: &str) -> ClientCertificate {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let mut params = client_params(cn, &[], serial);
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
        let key = KeyPair::generate().expect("client key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        ClientCertificate::new(&cert, &key, serial)
    }

    /// A CRL (PEM) revoking the certificates with these serial numbers.
    pub fn crl(&self, revoked: &[u64]) -> String {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from(self.next_serial.fetch_add(1, Ordering::Relaxed)),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: date_time_ymd(2021, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .expect("CRL")
            .pem()
            .expect("PEM")
    }
}

/// A subject alternative name of a test client certificate.
#[derive(Debug, Clone, Copy)]
pub enum San<'a> {
    /// A URI (a SPIFFE ID, say).
    Uri(&'a str),
    /// A DNS name.
    Dns(&'a str),
    /// An IP address.
    Ip(IpAddr),
    /// An email address (`rfc822Name`).
    Email(&'a str),
}

/// A self-signed client certificate (no CA: RFC 8705 §2.2's `self_signed_tls_client_auth`)
/// with common name `cn`.
pub fn self_signed_client(cn: &str) -> ClientCertificate {
    self_signed(client_params(cn, &[], 1))
}

/// A self-signed client certificate that expired in 2001.
pub fn expired_self_signed_client(cn: &str) -> ClientCertificate {
    let mut params = client_params(cn, &[], 1);
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = date_time_ymd(2001, 1, 1);
    self_signed(params)
}

fn self_signed(params: CertificateParams) -> ClientCertificate {
    let key = KeyPair::generate().expect("client key");
    let cert = params.self_signed(&key).expect("self-signed");
    ClientCertificate::new(&cert, &key, 1)
}

fn client_params(cn: &str, sans: &[San<'_>], serial: u64) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "trustgate tests");
    for san in sans {
        params.subject_alt_names.push(match *san {
            San::Uri(uri) => SanType::URI(uri.try_into().expect("an IA5 URI")),
            San::Dns(name) => SanType::DnsName(name.try_into().expect("an IA5 name")),
            San::Ip(ip) => SanType::IpAddress(ip),
            San::Email(email) => SanType::Rfc822Name(email.try_into().expect("an IA5 email")),
        });
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.serial_number = Some(SerialNumber::from(serial));
    params
}

/// A client certificate and its key.
#[derive(Debug)]
pub struct ClientCertificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its serial number (what a CRL names).
    pub serial: u64,
    /// Its public key as a JWK (EC P-256, `kid` the certificate's `x5t#S256`) carrying the
    /// certificate as `x5c`: what a client registers for `self_signed_tls_client_auth`
    /// (RFC 8705 §2.2).
    pub jwk: serde_json::Value,
}

impl ClientCertificate {
    fn new(cert: &rcgen::Certificate, key: &KeyPair, serial: u64) -> ClientCertificate {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        use sha2::Digest as _;
        // An uncompressed P-256 point: 0x04, then x and y of 32 bytes each.
        let point = key.public_key_raw();
        let thumbprint = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(cert.der()));
        let jwk = serde_json::json!({
            "kid": thumbprint,
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            "x5c": [STANDARD.encode(cert.der())],
        });
        ClientCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial,
            jwk,
        }
    }
}
