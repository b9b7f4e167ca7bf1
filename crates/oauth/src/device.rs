//! Device Authorization Grant (RFC 8628) user codes.
//!
//! A user code is 8 characters from a 20-letter alphabet without vowels (so no words form) and
//! without look-alikes, shown as `BCDF-GHJK`: 20^8 ≈ 2^34.6 codes (RFC 8628 §6.1 asks for enough
//! entropy that, with the per-IP throttle of the `/device` page and a 10-minute lifetime, guessing
//! one is impractical). Typing is forgiving: case, spaces and dashes do not matter.

/// The alphabet of user codes (RFC 8628 §6.1's example set).
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Characters in a user code, without the dash.
pub const USER_CODE_LEN: usize = 8;

/// A fresh user code in its normalized form (8 letters, no dash).
pub fn new_user_code() -> String {
    let mut code = String::with_capacity(USER_CODE_LEN);
    while code.len() < USER_CODE_LEN {
        // Rejection sampling keeps every letter equally likely: 240 is the largest multiple of
        // 20 that fits a byte.
        let byte: u8 = rand::random();
        if byte < 240 {
            code.push(char::from(USER_CODE_ALPHABET[usize::from(byte % 20)]));
        }
    }
    code
}

/// The normalized form of what a user typed, or `None` if it cannot be a user code.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// The display form: `BCDF-GHJK`.
pub fn display_user_code(normalized: &str) -> String {
    if normalized.len() == USER_CODE_LEN && normalized.is_ascii() {
        format!("{}-{}", &normalized[..4], &normalized[4..])
    } else {
        normalized.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_codes_normalize_to_themselves() {
        for _ in 0..100 {
            let code = new_user_code();
            assert_eq!(normalize_user_code(&code).as_deref(), Some(code.as_str()));
            let shown = display_user_code(&code);
            assert_eq!(shown.len(), 9);
            assert_eq!(normalize_user_code(&shown).as_deref(), Some(code.as_str()));
            assert_eq!(
                normalize_user_code(&shown.to_lowercase()).as_deref(),
                Some(code.as_str())
            );
        }
    }

    #[test]
    fn refuses_what_cannot_be_a_code() {
        for bad in [
            "",
            "BCDF-GHJ",
            "BCDF-GHJKL",
            "ABCD-EFGH",
            "BCDF-GHJ1",
            "BCDF-GHJ\u{e9}",
        ] {
            assert_eq!(normalize_user_code(bad), None, "{bad}");
        }
        assert_eq!(normalize_user_code(&"B".repeat(100)), None);
    }
}
