//! Look-alikes of credentials, for the negative paths of tests.

/// `credential` with its last character replaced by a different one: the same shape and
/// length, never the credential itself (a fixed replacement would equal it whenever the
/// credential already ended in that character).
pub fn last_char_changed(credential: &str) -> String {
    let mut chars: Vec<char> = credential.chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = if *last == 'x' { 'y' } else { 'x' };
    }
    chars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forgery_always_differs() {
        for s in ["abc", "abx", "x", "tg_live_01_Ax"] {
            let forged = last_char_changed(s);
            assert_ne!(forged, s);
            assert_eq!(forged.len(), s.len());
            assert_eq!(forged[..s.len() - 1], s[..s.len() - 1]);
        }
    }
}
