//! WebAuthn (passkeys): `clientDataJSON`, the attestation object (CBOR), authenticator data and
//! COSE keys at registration; authenticator data, COSE key and signature at authentication.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::KeyPair as _;
use bolero::{TypeGenerator, check};
use ciborium::Value;
use serde_json::json;
use sha2::{Digest, Sha256};
use trustgate_authn::webauthn::{RelyingParty, verify_assertion, verify_registration};

use crate::support::{SMOKE_ITERATIONS, b64, good, keys, pick};

const ORIGIN: &str = "https://auth.example.com";
const RP_ID: &str = "auth.example.com";
const CHALLENGE: [u8; 32] = [9; 32];
/// A bit above the parsers' caps: 4 KiB of client data, 16 KiB of authenticator data.
const MAX_INPUT: usize = 20 * 1024 + 1024;

fn rp() -> RelyingParty {
    RelyingParty::from_origin(ORIGIN).expect("rp")
}

#[derive(Debug, TypeGenerator)]
struct ClientData {
    kind: u8,
    challenge: u8,
    origin: u8,
    cross_origin: u8,
    raw: (u8, Vec<u8>),
}

impl ClientData {
    fn bytes(&self, ceremony: &str) -> Vec<u8> {
        if !good(self.raw.0) {
            return self.raw.1.clone();
        }
        let challenge = match (good(self.challenge), self.challenge % 3) {
            (true, _) => b64(&CHALLENGE),
            (false, 0) => b64(&[9; 31]),
            (false, 1) => format!("{}==", b64(&CHALLENGE)),
            (false, _) => "!!".into(),
        };
        let mut data = json!({
            "type": if good(self.kind) { ceremony } else { "webauthn.other" },
            "challenge": challenge,
            "origin": if good(self.origin) {
                ORIGIN
            } else {
                pick(&["https://auth.example.com:443", "https://evil.example", "HTTPS://AUTH.EXAMPLE.COM"], self.origin)
            },
        });
        match (good(self.cross_origin), self.cross_origin % 2) {
            (true, 0) => {}
            (true, _) => data["crossOrigin"] = json!(false),
            (false, 0) => data["crossOrigin"] = json!(true),
            (false, _) => data["crossOrigin"] = json!("yes"),
        }
        serde_json::to_vec(&data).expect("json")
    }

    fn acceptable(&self) -> bool {
        // A padded challenge is accepted too (browsers do not pad; the check strips `=`).
        good(self.raw.0)
            && good(self.kind)
            && (good(self.challenge) || self.challenge % 3 == 1)
            && good(self.origin)
            && good(self.cross_origin)
    }
}

#[derive(Debug, TypeGenerator)]
struct CoseKey {
    kind: u8,
    /// Replaces one parameter's value with another CBOR value.
    corrupt: (u8, u8, u8),
    raw: (u8, Vec<u8>),
}

impl CoseKey {
    fn bytes(&self) -> Vec<u8> {
        if !good(self.raw.0) {
            return self.raw.1.clone();
        }
        let keys = keys();
        let mut pairs: Vec<(Value, Value)> = if self.kind.is_multiple_of(2) {
            let point = keys.es_der.public_key().as_ref();
            vec![
                (Value::from(1), Value::from(2)),
                (Value::from(3), Value::from(-7)),
                (Value::from(-1), Value::from(1)),
                (Value::from(-2), Value::Bytes(point[1..33].to_vec())),
                (Value::from(-3), Value::Bytes(point[33..65].to_vec())),
            ]
        } else {
            vec![
                (Value::from(1), Value::from(1)),
                (Value::from(3), Value::from(-8)),
                (Value::from(-1), Value::from(6)),
                (
                    Value::from(-2),
                    Value::Bytes(keys.ed.public_key().as_ref().to_vec()),
                ),
            ]
        };
        if !good(self.corrupt.0) {
            let (at, with) = (self.corrupt.1, self.corrupt.2);
            let at = usize::from(at) % pairs.len();
            pairs[at].1 = match with % 6 {
                0 => Value::from(-257),
                1 => Value::Bytes(vec![0; 32]),
                2 => Value::Bytes(vec![0xff; 33]),
                3 => Value::Text("P-256".into()),
                4 => Value::from(i64::MIN),
                _ => Value::Null,
            };
        }
        let mut out = Vec::new();
        ciborium::into_writer(&Value::Map(pairs), &mut out).expect("cbor");
        out
    }

    fn is_es256(&self) -> bool {
        self.kind.is_multiple_of(2)
    }
}

#[derive(Debug, TypeGenerator)]
struct AuthData {
    rp_id: u8,
    flags: u8,
    counter: u32,
    credential_id: Vec<u8>,
    /// Declared credential id length, when it should lie.
    declared_len: (u8, u16),
    extensions: (u8, Vec<u8>),
    trailing: (u8, Vec<u8>),
}

impl AuthData {
    fn bytes(&self, attested_key: Option<&[u8]>) -> Vec<u8> {
        let rp_id = if good(self.rp_id) {
            RP_ID
        } else {
            pick(&["example.com", "AUTH.EXAMPLE.COM"], self.rp_id)
        };
        let mut out = Sha256::digest(rp_id.as_bytes()).to_vec();
        let mut flags = self.flags();
        if attested_key.is_some() {
            flags |= 0x40;
        }
        out.push(flags);
        out.extend_from_slice(&self.counter.to_be_bytes());
        if let Some(key) = attested_key.filter(|_| flags & 0x40 != 0) {
            out.extend_from_slice(&[0; 16]);
            let len = if good(self.declared_len.0) {
                u16::try_from(self.credential_id.len()).unwrap_or(u16::MAX)
            } else {
                self.declared_len.1
            };
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&self.credential_id);
            out.extend_from_slice(key);
        }
        if !good(self.extensions.0) {
            out.extend_from_slice(&self.extensions.1);
        }
        if !good(self.trailing.0) {
            out.extend_from_slice(&self.trailing.1);
        }
        out
    }

    /// Mostly UP and UV without the extension flag; else the generated byte as is.
    fn flags(&self) -> u8 {
        if good(self.flags) {
            (self.flags & !0x80 & !0x10) | 0x05
        } else {
            self.flags
        }
    }
}

#[derive(Debug, TypeGenerator)]
struct Registration {
    client: ClientData,
    fmt: u8,
    att_stmt: u8,
    auth: AuthData,
    key: CoseKey,
    raw_object: (u8, Vec<u8>),
    require_uv: bool,
}

#[test]
fn registration() {
    let rp = rp();
    check!()
        .with_type::<Registration>()
        .with_iterations(SMOKE_ITERATIONS)
        .with_max_len(MAX_INPUT)
        .for_each(|case| {
            let client = case.client.bytes("webauthn.create");
            let key = case.key.bytes();
            let auth = case.auth.bytes(Some(&key));
            let object = match good(case.raw_object.0) {
                false => case.raw_object.1.clone(),
                true => {
                    let att_stmt = if good(case.att_stmt) {
                        Value::Map(vec![])
                    } else {
                        Value::Map(vec![(Value::from("sig"), Value::Bytes(vec![1]))])
                    };
                    let object = Value::Map(vec![
                        (
                            Value::from("fmt"),
                            Value::from(if good(case.fmt) {
                                "none"
                            } else {
                                pick(&["packed", ""], case.fmt)
                            }),
                        ),
                        (Value::from("attStmt"), att_stmt),
                        (Value::from("authData"), Value::Bytes(auth.clone())),
                    ]);
                    let mut out = Vec::new();
                    ciborium::into_writer(&object, &mut out).expect("cbor");
                    out
                }
            };
            if let Ok(credential) =
                verify_registration(&rp, &CHALLENGE, &client, &object, case.require_uv)
            {
                assert!(case.client.acceptable(), "client data accepted: {case:?}");
                assert!(good(case.auth.rp_id), "wrong RP ID accepted");
                assert!(case.auth.flags() & 0x01 != 0, "user presence missing");
                assert!(!case.require_uv || case.auth.flags() & 0x04 != 0);
                assert!((1..=1023).contains(&credential.credential_id.len()));
                if good(case.raw_object.0) && good(case.key.raw.0) {
                    assert_eq!(credential.credential_id, case.auth.credential_id);
                    assert_eq!(credential.public_key, key);
                }
            }
        });
}

#[derive(Debug, TypeGenerator)]
struct Assertion {
    client: ClientData,
    auth: AuthData,
    key: CoseKey,
    signer: u8,
    raw_signature: Vec<u8>,
    stored_count: u32,
    require_uv: bool,
}

#[test]
fn assertion() {
    let rp = rp();
    check!()
        .with_type::<Assertion>()
        .with_iterations(SMOKE_ITERATIONS)
        .with_max_len(MAX_INPUT)
        .for_each(|case| {
            let keys = keys();
            let client = case.client.bytes("webauthn.get");
            let auth = case.auth.bytes(None);
            let key = case.key.bytes();
            let mut message = auth.clone();
            message.extend_from_slice(&Sha256::digest(&client));
            // Signed with the credential's own key, with the other algorithm's key, or junk.
            let (signature, by_credential_key) = match (good(case.signer), case.signer % 2) {
                (true, _) if case.key.is_es256() => (
                    keys.es_der
                        .sign(&SystemRandom::new(), &message)
                        .expect("sig")
                        .as_ref()
                        .to_vec(),
                    true,
                ),
                (true, _) => (keys.ed.sign(&message).as_ref().to_vec(), true),
                (false, 0) => (keys.stranger.sign(&message).as_ref().to_vec(), false),
                (false, _) => (case.raw_signature.clone(), false),
            };
            let result = verify_assertion(
                &rp,
                &CHALLENGE,
                &client,
                &auth,
                &signature,
                &key,
                case.stored_count,
                case.require_uv,
            );
            if let Ok(verified) = result {
                assert!(
                    by_credential_key,
                    "accepted a signature not made by the credential key: {case:?}"
                );
                assert!(case.client.acceptable(), "client data accepted: {case:?}");
                assert!(case.auth.flags() & 0x01 != 0);
                assert_eq!(verified.sign_count, case.auth.counter);
                assert!(
                    (case.stored_count == 0 && case.auth.counter == 0)
                        || case.auth.counter > case.stored_count,
                    "counter regression accepted"
                );
            }
        });
}
