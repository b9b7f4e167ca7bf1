//! Small HTTP helpers shared by the remote clients (JWKS, introspection, PDP, the gateway's
//! token exchange).

/// Reads at most `limit` bytes of `response`'s body; a longer body is an error, not truncated.
pub async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the body failed: {e}"))?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("body larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
