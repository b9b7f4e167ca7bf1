//! Refresh-token rotation (RFC 9700 §4.14.2): the rule the store applies inside its transaction.
//!
//! Every refresh exchanges the presented token for a new one. A token presented again after it
//! was exchanged is a replay, unless the client opted into a grace period, the first exchange
//! happened less than that ago (two tabs refreshing at once) and the grace was not used yet: it
//! is honoured once. A replay revokes the whole grant, so a stolen token is useful to at most
//! one party. A token is refused outright when it was issued to another client, has
//! expired, or its grant is revoked or expired, or the grant's user is disabled or gone.

use time::{Duration, OffsetDateTime};
use trustgate_store_api::{Grant, RefreshToken, RotationStep, UserStatus};

/// What to do with `token` of `grant` presented by `client_id` at `now`, given the status of the
/// grant's user (`None` when the grant has no user, or the user is gone).
pub fn rotation_step(
    token: &RefreshToken,
    grant: &Grant,
    user_status: Option<UserStatus>,
    client_id: &str,
    now: OffsetDateTime,
    grace: Duration,
) -> RotationStep {
    if grant.client_id != client_id
        || token.expires_at <= now
        || grant.expires_at <= now
        || grant.revoked_at.is_some()
    {
        return RotationStep::Invalid;
    }
    if grant.user_id.is_some() && user_status != Some(UserStatus::Active) {
        return RotationStep::Invalid;
    }
    match token.rotated_at {
        None => RotationStep::Rotate,
        Some(rotated) if now - rotated < grace && !token.grace_used => RotationStep::Grace,
        Some(_) => RotationStep::Reuse,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    const T0: OffsetDateTime = time::macros::datetime!(2026-11-23 10:00 UTC);

    fn grant() -> Grant {
        Grant {
            id: "g".into(),
            client_id: "c".into(),
            user_id: Some("u".into()),
            session_id: None,
            scope: "openid".into(),
            created_at: T0,
            expires_at: T0 + Duration::hours(1),
            revoked_at: None,
            detail: Map::new(),
        }
    }

    fn token(rotated_at: Option<OffsetDateTime>) -> RefreshToken {
        RefreshToken {
            grant_id: "g".into(),
            created_at: T0,
            expires_at: T0 + Duration::minutes(30),
            rotated_at,
            grace_used: false,
        }
    }

    #[test]
    fn without_a_grace_any_second_use_is_a_reuse() {
        let now = T0 + Duration::minutes(1);
        let just_rotated = token(Some(now));
        assert_eq!(
            rotation_step(
                &just_rotated,
                &grant(),
                Some(UserStatus::Active),
                "c",
                now,
                Duration::ZERO
            ),
            RotationStep::Reuse
        );
    }

    #[test]
    fn rotations_are_decided() {
        let grace = Duration::seconds(10);
        let now = T0 + Duration::minutes(1);
        let step = |t: &RefreshToken, g: &Grant, status: Option<UserStatus>, client: &str, now| {
            rotation_step(t, g, status, client, now, grace)
        };
        let active = Some(UserStatus::Active);
        let cases = [
            (token(None), grant(), active, "c", now, RotationStep::Rotate),
            (
                token(Some(now - Duration::seconds(9))),
                grant(),
                active,
                "c",
                now,
                RotationStep::Grace,
            ),
            (
                token(Some(now - Duration::seconds(10))),
                grant(),
                active,
                "c",
                now,
                RotationStep::Reuse,
            ),
            (
                RefreshToken {
                    grace_used: true,
                    ..token(Some(now - Duration::seconds(1)))
                },
                grant(),
                active,
                "c",
                now,
                RotationStep::Reuse,
            ),
            (
                token(Some(now - Duration::seconds(10))),
                grant(),
                active,
                "other",
                now,
                RotationStep::Invalid,
            ),
            (
                token(None),
                grant(),
                Some(UserStatus::Disabled),
                "c",
                now,
                RotationStep::Invalid,
            ),
            (token(None), grant(), None, "c", now, RotationStep::Invalid),
            (
                token(None),
                Grant {
                    user_id: None,
                    ..grant()
                },
                None,
                "c",
                now,
                RotationStep::Rotate,
            ),
            (
                token(None),
                grant(),
                active,
                "c",
                T0 + Duration::minutes(30),
                RotationStep::Invalid,
            ),
            (
                token(None),
                Grant {
                    revoked_at: Some(T0),
                    ..grant()
                },
                active,
                "c",
                now,
                RotationStep::Invalid,
            ),
            (
                token(None),
                Grant {
                    expires_at: now,
                    ..grant()
                },
                active,
                "c",
                now,
                RotationStep::Invalid,
            ),
        ];
        for (i, (t, g, status, client, at, expected)) in cases.into_iter().enumerate() {
            assert_eq!(step(&t, &g, status, client, at), expected, "case {i}");
        }
    }
}
