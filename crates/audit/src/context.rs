use std::net::IpAddr;

/// User agents are kept up to this many characters (they are client-controlled).
pub const MAX_USER_AGENT_CHARS: usize = 512;
/// Request ids are kept up to this many characters.
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// Where a request came from, for throttling and the audit trail. Nothing in it is secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The client's address (after trusted-proxy resolution).
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, at most [`MAX_USER_AGENT_CHARS`] characters.
    pub user_agent: Option<String>,
    /// The request id, at most [`MAX_REQUEST_ID_CHARS`] characters.
    pub request_id: Option<String>,
}

impl RequestContext {
    /// A context from what a transport knows, clipped to the lengths the trail keeps.
    pub fn new(ip: Option<IpAddr>, user_agent: Option<&str>, request_id: Option<&str>) -> Self {
        Self {
            ip,
            user_agent: user_agent.map(|ua| clip(ua, MAX_USER_AGENT_CHARS)),
            request_id: request_id.map(|id| clip(id, MAX_REQUEST_ID_CHARS)),
        }
    }
}

/// At most `max` characters of `s`.
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_controlled_text_is_clipped_by_characters() {
        let ua = "é".repeat(MAX_USER_AGENT_CHARS + 10);
        let id = "r".repeat(MAX_REQUEST_ID_CHARS + 1);
        let ctx = RequestContext::new(Some([10, 0, 0, 1].into()), Some(&ua), Some(&id));
        assert_eq!(
            ctx.user_agent.as_deref().map(|s| s.chars().count()),
            Some(MAX_USER_AGENT_CHARS)
        );
        assert_eq!(
            ctx.request_id.as_deref().map(str::len),
            Some(MAX_REQUEST_ID_CHARS)
        );
        assert_eq!(
            RequestContext::new(None, None, None),
            RequestContext::default()
        );
    }
}
