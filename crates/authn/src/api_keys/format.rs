//! The API key string: `tg_<env>_<key id>_<secret><checksum>`.
//!
//! - `tg_` and `<env>` (1 to 10 of `a-z0-9`, e.g. `live`, `test`) are a non-secret, greppable
//!   prefix: a leaked key says whose and which deployment's it is.
//! - `<key id>` is the key's ULID (26 characters of Crockford base32), the handle used to list,
//!   revoke and rotate it; not secret.
//! - `<secret>` is 43 base62 characters drawn uniformly: 43·log2(62) ≈ 256.03 bits.
//! - `<checksum>` is the CRC-32 of everything before it, as 6 base62 characters, so that a
//!   secret scanner (or this server, before any database lookup) can tell a real key from a
//!   look-alike with no database.
//!
//! Secret scanners match `tg_[a-z0-9]{1,10}_[0-9A-HJKMNP-TV-Z]{26}_[0-9A-Za-z]{49}` and verify
//! the checksum. The server stores only the SHA-256 of the whole string.

use trustgate_core::Secret;

/// The base62 alphabet, in value order.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Characters of the random secret.
pub const SECRET_CHARS: usize = 43;
/// Characters of the checksum.
pub const CHECKSUM_CHARS: usize = 6;
/// The longest environment label.
pub const MAX_ENV_CHARS: usize = 10;

/// Whether `env` is a valid environment label (1 to 10 of `a-z0-9`).
pub fn valid_env(env: &str) -> bool {
    (1..=MAX_ENV_CHARS).contains(&env.len())
        && env
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A new key string for key `key_id` in environment `env` (both valid; see [`valid_env`]).
pub fn generate(env: &str, key_id: &str) -> Secret {
    let mut key = format!("tg_{env}_{key_id}_");
    let mut drawn = 0;
    while drawn < SECRET_CHARS {
        let bytes: [u8; 64] = rand::random();
        // Rejection sampling keeps every character uniform: 248 = 4 · 62.
        for byte in bytes
            .into_iter()
            .filter(|&b| b < 248)
            .take(SECRET_CHARS - drawn)
        {
            key.push(char::from(BASE62[usize::from(byte % 62)]));
            drawn += 1;
        }
    }
    let checksum = checksum(&key);
    key.push_str(&checksum);
    Secret::new(key)
}

fn checksum(body: &str) -> String {
    let mut value = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// What a presented token looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape<'a> {
    /// A well-formed key with a correct checksum, with its key id.
    Key {
        /// The environment label.
        env: &'a str,
        /// The key id.
        key_id: &'a str,
    },
    /// Key-shaped but the checksum is wrong: a typo or a forgery; refused without a lookup.
    BadChecksum,
    /// Not key-shaped: a token from before this format (the bootstrap token of an earlier
    /// release, or one configured by `TRUSTGATE_BOOTSTRAP_TOKEN`), looked up by digest only.
    Other,
}

/// Classifies a presented token.
pub fn shape(token: &str) -> Shape<'_> {
    let Some(rest) = token.strip_prefix("tg_") else {
        return Shape::Other;
    };
    let Some((env, rest)) = rest.split_once('_') else {
        return Shape::Other;
    };
    let Some((key_id, tail)) = rest.split_once('_') else {
        return Shape::Other;
    };
    if !valid_env(env)
        || !trustgate_core::id::is_ulid(key_id)
        || tail.len() != SECRET_CHARS + CHECKSUM_CHARS
        || !tail.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Shape::Other;
    }
    let (body, sum) = token.split_at(token.len() - CHECKSUM_CHARS);
    if checksum(body) == sum {
        Shape::Key { env, key_id }
    } else {
        Shape::BadChecksum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01JF3Z9Q7W8X2Y4Z6A8B0C2D4E";

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let key = generate("live", ID);
        let s = key.expose();
        assert!(s.starts_with("tg_live_01JF3Z9Q7W8X2Y4Z6A8B0C2D4E_"), "{s}");
        assert_eq!(s.len(), "tg_live_".len() + 26 + 1 + 49);
        assert_eq!(
            shape(s),
            Shape::Key {
                env: "live",
                key_id: ID
            }
        );
        assert_ne!(generate("live", ID).expose(), s, "secrets are random");
    }

    #[test]
    fn one_changed_character_breaks_the_checksum() {
        let key = generate("test", ID);
        let s = key.expose();
        for at in [s.len() - 1, s.len() - 10, s.len() - 40] {
            let mut bytes = s.as_bytes().to_vec();
            bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).expect("ascii");
            assert_eq!(shape(&changed), Shape::BadChecksum, "position {at}");
        }
    }

    #[test]
    fn other_tokens_are_not_keys() {
        for s in [
            "",
            "tg_admin_4Jm1jvZ0kXQ-abc",
            "tg_live_notaulid_xxx",
            "bearer",
            "tg_LIVE_01JF3Z9Q7W8X2Y4Z6A8B0C2D4E_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "tg_live_01JF3Z9Q7W8X2Y4Z6A8B0C2D4E_aaaa",
        ] {
            assert_eq!(shape(s), Shape::Other, "{s}");
        }
    }

    #[test]
    fn environment_labels_are_checked() {
        assert!(valid_env("live") && valid_env("prod2") && valid_env("a"));
        assert!(
            !valid_env("") && !valid_env("Live") && !valid_env("eleven-char") && !valid_env("a_b")
        );
    }
}
