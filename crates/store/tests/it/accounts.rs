//! Users, sessions, second factors and the audit trail, on every backend.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use trustgate_core::TokenDigest;
use trustgate_core::id::new_ulid;
use trustgate_store::test_on_both_backends;
use trustgate_store::testing::TestDatabase;
use trustgate_store_api::{AuditChain, Conflict};
use trustgate_store_api::{
    AuditEvent, AuditFilter, NewUser, Passkey, Session, StoreError, User, UserStatus, UserUpdate,
};

test_on_both_backends!(
    usernames_and_emails_conflict_case_insensitively_and_write_nothing,
    update_to_a_taken_email_conflicts,
    concurrent_signups_for_one_name_let_exactly_one_win,
    disabling_revokes_sessions_for_good,
    sessions_for_unknown_or_disabled_users_are_refused,
    sessions_created_during_a_disable_do_not_survive_it,
    expired_and_revoked_sessions_are_not_found,
    rotating_a_dead_or_foreign_session_writes_nothing,
    concurrent_rotations_of_one_session_let_exactly_one_win,
    sessions_of_another_user_cannot_be_revoked,
    revoking_all_sessions_keeps_the_current_one,
    purge_removes_only_dead_sessions,
    totp_steps_only_move_forward,
    concurrent_totp_advances_let_exactly_one_win,
    pending_totp_never_replaces_a_confirmed_one,
    recovery_codes_are_consumed_once,
    concurrent_recovery_code_use_lets_exactly_one_win,
    passkey_ids_are_global_and_deleted_only_by_their_owner,
    deleting_a_user_deletes_what_belongs_to_them,
    bad_input_is_refused,
    users_round_trip,
    user_pages_walk_every_user_once,
    sessions_round_trip_and_rotate,
    audit_is_newest_first_and_filtered,
    audit_batches_are_all_or_nothing,
);

const T0: OffsetDateTime = datetime!(2026-11-23 10:00 UTC);

fn at(seconds: i64) -> OffsetDateTime {
    T0 + time::Duration::seconds(seconds)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn new_user(username: &str, email: &str) -> NewUser {
    NewUser {
        id: new_ulid(T0),
        username: username.to_owned(),
        email: email.to_owned(),
        name: None,
        locale: None,
        attributes: Map::new(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
    }
}

async fn create(db: &TestDatabase, username: &str, email: &str) -> User {
    db.store
        .create_user(&new_user(username, email), T0)
        .await
        .expect("create user")
}

/// A session created at T0, idle for 10 minutes, absolute 1 hour.
fn session(user: &User) -> Session {
    Session {
        id: new_ulid(T0),
        user_id: user.id.clone(),
        created_at: T0,
        last_seen_at: T0,
        idle_expires_at: at(600),
        absolute_expires_at: at(3600),
        auth_time: T0,
        amr: vec!["pwd".to_owned()],
        acr: "urn:trustgate:pwd".to_owned(),
        ip: Some("192.0.2.1".to_owned()),
        user_agent: Some("test".to_owned()),
    }
}

/// Creates a live session; returns it and the digest of its secret.
async fn login(db: &TestDatabase, user: &User, secret: &str) -> (Session, TokenDigest) {
    let s = session(user);
    let digest = TokenDigest::of(secret);
    db.store
        .create_session(&digest, &s)
        .await
        .expect("create session");
    (s, digest)
}

async fn find(db: &TestDatabase, digest: &TokenDigest, now: OffsetDateTime) -> Option<Session> {
    db.store.find_session(digest, now).await.expect("find")
}

fn conflict(err: &StoreError) -> &Conflict {
    match err {
        StoreError::Conflict(kind) => kind,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn confirmed_totp(db: &TestDatabase, user: &User, step: i64) {
    db.store
        .put_pending_totp(&user.id, b"sealed", T0)
        .await
        .expect("pending");
    assert!(
        db.store
            .confirm_totp(&user.id, step)
            .await
            .expect("confirm")
    );
}

fn passkey(user: &User, id: &[u8]) -> Passkey {
    Passkey {
        credential_id: id.to_vec(),
        user_id: user.id.clone(),
        name: "laptop".to_owned(),
        public_key: vec![0xa5, 1, 2, 3],
        sign_count: 0,
        metadata: object(json!({"backup_eligible": true, "transports": ["internal"]})),
        created_at: T0,
        last_used_at: None,
    }
}

fn event(id: String, kind: &str, user: Option<&str>) -> AuditEvent {
    AuditEvent {
        id,
        at: T0,
        chain: if kind == "authorization_decision" {
            AuditChain::Streamed
        } else {
            AuditChain::Recorded
        },
        kind: kind.to_owned(),
        outcome: "success".to_owned(),
        actor: user.map(|u| format!("user:{u}")),
        user_id: user.map(str::to_owned),
        ip: None,
        user_agent: None,
        request_id: Some("req-1".to_owned()),
        resource: None,
        detail: object(json!({"method": "pwd"})),
    }
}

// ---------------------------------------------------------------------------------------------

async fn usernames_and_emails_conflict_case_insensitively_and_write_nothing(db: TestDatabase) {
    let ann = create(&db, "Ann", "Ann@Example.com").await;

    let same_name = db
        .store
        .create_user(&new_user("aNN", "other@example.com"), T0)
        .await
        .expect_err("username taken");
    assert_eq!(conflict(&same_name), &Conflict::UsernameTaken);
    let same_email = db
        .store
        .create_user(&new_user("bob", "ann@EXAMPLE.COM"), T0)
        .await
        .expect_err("email taken");
    assert_eq!(conflict(&same_email), &Conflict::EmailTaken);
    // Non-ASCII case folding is the same on both backends.
    create(&db, "Ärger", "aerger@example.com").await;
    let folded = db
        .store
        .create_user(&new_user("äRGER", "x@example.com"), T0)
        .await
        .expect_err("unicode username taken");
    assert_eq!(conflict(&folded), &Conflict::UsernameTaken);
    // Usernames and emails share one namespace, so a login never names two users.
    let name_is_email = db
        .store
        .create_user(&new_user("ANN@example.com", "carol@example.com"), T0)
        .await
        .expect_err("username is another user's email");
    assert_eq!(conflict(&name_is_email), &Conflict::UsernameTaken);
    let email_is_name = db
        .store
        .create_user(&new_user("dave", "ann"), T0)
        .await
        .expect_err("email is another user's username");
    assert_eq!(conflict(&email_is_name), &Conflict::EmailTaken);

    // Nothing of the refused users was written.
    for login in [
        "bob",
        "other@example.com",
        "carol@example.com",
        "dave",
        "x@example.com",
    ] {
        assert_eq!(
            db.store.find_user_by_login(login).await.expect("find"),
            None,
            "{login}"
        );
    }
    let page = db.store.list_users(None, 100).await.expect("list");
    assert_eq!(page.users.len(), 2);
    // One's own username may equal one's own email.
    create(&db, "eve@example.com", "EVE@example.com").await;
    assert_eq!(
        db.store
            .find_user_by_login("ann@example.COM")
            .await
            .expect("find")
            .map(|u| u.id),
        Some(ann.id)
    );
}

async fn update_to_a_taken_email_conflicts(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let bob = create(&db, "bob", "bob@example.com").await;
    for taken in ["ANN@example.com", "Ann"] {
        let err = db
            .store
            .update_user(
                &bob.id,
                &UserUpdate {
                    email: Some(taken.to_owned()),
                    name: Some(Some("Bob".to_owned())),
                    ..UserUpdate::default()
                },
                at(5),
            )
            .await
            .expect_err("email taken");
        assert_eq!(conflict(&err), &Conflict::EmailTaken);
    }
    // Nothing changed, not even the name given alongside.
    let unchanged = db.store.get_user(&bob.id).await.expect("get");
    assert_eq!(unchanged, Some(bob.clone()));
    assert_eq!(db.store.get_user(&ann.id).await.expect("get"), Some(ann));
    // Keeping one's own email, in another case, is not a conflict.
    let updated = db
        .store
        .update_user(
            &bob.id,
            &UserUpdate {
                email: Some("BOB@example.com".to_owned()),
                ..UserUpdate::default()
            },
            at(6),
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(updated.email, "BOB@example.com");
    let missing = db
        .store
        .update_user(&new_ulid(T0), &UserUpdate::default(), at(7))
        .await
        .expect("update unknown");
    assert_eq!(missing, None);
}

async fn concurrent_signups_for_one_name_let_exactly_one_win(db: TestDatabase) {
    // Half the racers want the name as a username, half as an email: no unique index covers
    // both columns, so only the store's serialization keeps the namespace shared.
    for round in 0..4 {
        let name = format!("Racer{round}@example.com");
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let store = db.store.clone();
                let user = if i % 2 == 0 {
                    new_user(&name.to_uppercase(), &format!("r{round}-{i}@example.org"))
                } else {
                    new_user(&format!("r{round}-{i}"), &name.to_lowercase())
                };
                tokio::spawn(async move { store.create_user(&user, T0).await })
            })
            .collect();
        let mut wins = 0;
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.expect("task") {
                Ok(_) => wins += 1,
                // The loser is told which of its names is taken, whichever way the winner has it.
                Err(StoreError::Conflict(kind)) => assert_eq!(
                    kind,
                    if i % 2 == 0 {
                        Conflict::UsernameTaken
                    } else {
                        Conflict::EmailTaken
                    },
                    "round {round}, racer {i}"
                ),
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
        let page = db.store.list_users(None, 100).await.expect("list");
        assert_eq!(page.users.len(), round + 1);
    }
}

async fn disabling_revokes_sessions_for_good(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let bob = create(&db, "bob", "bob@example.com").await;
    let (_, a1) = login(&db, &ann, "a1").await;
    let (_, a2) = login(&db, &ann, "a2").await;
    let (_, b1) = login(&db, &bob, "b1").await;

    assert!(
        db.store
            .set_user_status(&ann.id, UserStatus::Disabled, at(10))
            .await
            .expect("disable")
    );
    assert_eq!(find(&db, &a1, at(11)).await, None);
    assert_eq!(find(&db, &a2, at(11)).await, None);
    assert!(
        find(&db, &b1, at(11)).await.is_some(),
        "other users keep theirs"
    );
    let disabled = db.store.get_user(&ann.id).await.expect("get").expect("ann");
    assert_eq!(disabled.status, UserStatus::Disabled);
    assert_eq!(disabled.updated_at, at(10));

    assert!(
        db.store
            .set_user_status(&ann.id, UserStatus::Active, at(20))
            .await
            .expect("enable")
    );
    assert_eq!(
        find(&db, &a1, at(21)).await,
        None,
        "re-enabling resurrects nothing"
    );
    assert_eq!(find(&db, &a2, at(21)).await, None);
    assert!(
        db.store
            .list_user_sessions(&ann.id, at(21))
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        !db.store
            .set_user_status(&new_ulid(T0), UserStatus::Disabled, at(22))
            .await
            .expect("unknown user")
    );
}

async fn sessions_for_unknown_or_disabled_users_are_refused(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    db.store
        .set_user_status(&ann.id, UserStatus::Disabled, T0)
        .await
        .expect("disable");
    let digest = TokenDigest::of("s");
    let err = db
        .store
        .create_session(&digest, &session(&ann))
        .await
        .expect_err("disabled");
    assert_eq!(conflict(&err), &Conflict::UserDisabled);
    let mut ghost = session(&ann);
    ghost.user_id = new_ulid(T0);
    let err = db
        .store
        .create_session(&digest, &ghost)
        .await
        .expect_err("unknown user");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    db.store
        .set_user_status(&ann.id, UserStatus::Active, at(1))
        .await
        .expect("enable");
    assert_eq!(find(&db, &digest, at(2)).await, None, "nothing was stored");
}

async fn sessions_created_during_a_disable_do_not_survive_it(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    for round in 0..3 {
        let logins: Vec<_> = (0..6)
            .map(|i| {
                let store = db.store.clone();
                let s = session(&ann);
                tokio::spawn(async move {
                    let digest = TokenDigest::of(&format!("{round}-{i}"));
                    store.create_session(&digest, &s).await
                })
            })
            .collect();
        let disable = {
            let store = db.store.clone();
            let id = ann.id.clone();
            tokio::spawn(async move {
                store
                    .set_user_status(&id, UserStatus::Disabled, at(1))
                    .await
            })
        };
        for task in logins {
            match task.await.expect("task") {
                Ok(()) => {}
                Err(StoreError::Conflict(m)) => assert_eq!(m, Conflict::UserDisabled),
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert!(disable.await.expect("task").expect("disable"));
        db.store
            .set_user_status(&ann.id, UserStatus::Active, at(2))
            .await
            .expect("enable");
        // Every session either existed before the disable (and was revoked) or was refused.
        assert!(
            db.store
                .list_user_sessions(&ann.id, at(3))
                .await
                .expect("list")
                .is_empty(),
            "round {round}"
        );
    }
}

async fn expired_and_revoked_sessions_are_not_found(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let (s, digest) = login(&db, &ann, "secret").await;
    assert_eq!(find(&db, &TokenDigest::of("secreT"), at(1)).await, None);
    assert_eq!(find(&db, &digest, at(599)).await.as_ref(), Some(&s));
    // Idle expiry is exclusive: expired at the instant itself.
    assert_eq!(find(&db, &digest, at(600)).await, None);
    // Touching an idle-expired session does not revive it.
    db.store
        .touch_session(&s.id, at(700), at(1300))
        .await
        .expect("touch");
    assert_eq!(find(&db, &digest, at(701)).await, None);

    // Touched in time, the idle expiry moves, but never past the absolute one.
    let (t, live) = login(&db, &ann, "kept-alive").await;
    let mut now = 0;
    while now < 3500 {
        now += 500;
        db.store
            .touch_session(&t.id, at(now), at(now + 600))
            .await
            .expect("touch");
    }
    let touched = find(&db, &live, at(3599)).await.expect("alive at 3599");
    assert_eq!(touched.last_seen_at, at(3500));
    assert_eq!(touched.idle_expires_at, at(4100));
    assert_eq!(find(&db, &live, at(3600)).await, None, "absolute expiry");

    let (r, revoked) = login(&db, &ann, "revoked").await;
    assert!(
        db.store
            .revoke_session(&ann.id, &r.id, at(5))
            .await
            .expect("revoke")
    );
    assert_eq!(find(&db, &revoked, at(6)).await, None);
    assert!(
        !db.store
            .revoke_session(&ann.id, &r.id, at(7))
            .await
            .expect("revoke twice")
    );
    db.store
        .touch_session(&r.id, at(8), at(608))
        .await
        .expect("touch");
    assert_eq!(find(&db, &revoked, at(9)).await, None);
}

async fn rotating_a_dead_or_foreign_session_writes_nothing(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let bob = create(&db, "bob", "bob@example.com").await;
    let (old, _) = login(&db, &ann, "old").await;
    db.store
        .revoke_session(&ann.id, &old.id, at(1))
        .await
        .expect("revoke");

    let fresh = TokenDigest::of("fresh");
    let mut next = session(&ann);
    next.amr = vec!["pwd".to_owned(), "otp".to_owned(), "mfa".to_owned()];
    for old_id in [old.id.clone(), new_ulid(T0)] {
        assert!(
            !db.store
                .rotate_session(&old_id, &fresh, &next, at(2))
                .await
                .expect("rotate")
        );
    }
    // An expired session cannot be rotated either.
    let (expired, _) = login(&db, &ann, "expired").await;
    assert!(
        !db.store
            .rotate_session(&expired.id, &fresh, &next, at(600))
            .await
            .expect("rotate expired")
    );
    // Nor can another user's live session be rotated into one of ann's.
    let (bobs, bobs_digest) = login(&db, &bob, "bob").await;
    assert!(
        !db.store
            .rotate_session(&bobs.id, &fresh, &next, at(3))
            .await
            .expect("rotate foreign")
    );
    assert!(
        find(&db, &bobs_digest, at(4)).await.is_some(),
        "bob's is untouched"
    );

    assert_eq!(
        find(&db, &fresh, at(4)).await,
        None,
        "new session not stored"
    );
    let ids: Vec<String> = db
        .store
        .list_user_sessions(&ann.id, at(4))
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, [expired.id], "only the still-live session remains");
}

async fn concurrent_rotations_of_one_session_let_exactly_one_win(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let (old, _) = login(&db, &ann, "old").await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let store = db.store.clone();
            let old_id = old.id.clone();
            let new = session(&ann);
            tokio::spawn(async move {
                let digest = TokenDigest::of(&format!("new-{i}"));
                store.rotate_session(&old_id, &digest, &new, at(1)).await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        if task.await.expect("task").expect("rotate") {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    let live = db
        .store
        .list_user_sessions(&ann.id, at(2))
        .await
        .expect("list");
    assert_eq!(live.len(), 1, "exactly one successor session");
}

async fn sessions_of_another_user_cannot_be_revoked(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let bob = create(&db, "bob", "bob@example.com").await;
    let (s, digest) = login(&db, &ann, "ann").await;
    let epoch = db.store.credential_epoch().await.expect("epoch");
    assert!(
        !db.store
            .revoke_session(&bob.id, &s.id, at(1))
            .await
            .expect("revoke")
    );
    assert!(
        !db.store
            .revoke_session(&ann.id, &new_ulid(T0), at(1))
            .await
            .expect("revoke unknown")
    );
    assert_eq!(
        db.store
            .revoke_user_sessions(&bob.id, None, at(1))
            .await
            .expect("revoke all of bob's"),
        0
    );
    assert!(find(&db, &digest, at(2)).await.is_some());
    assert_eq!(
        db.store.credential_epoch().await.expect("epoch"),
        epoch,
        "nothing was revoked, so no cache has to forget anything"
    );
}

async fn revoking_all_sessions_keeps_the_current_one(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let bob = create(&db, "bob", "bob@example.com").await;
    let (current, keep) = login(&db, &ann, "current").await;
    let (_, other1) = login(&db, &ann, "other1").await;
    let (_, other2) = login(&db, &ann, "other2").await;
    let (_, bobs) = login(&db, &bob, "bob").await;
    let epoch = db.store.credential_epoch().await.expect("epoch");
    assert_eq!(
        db.store
            .revoke_user_sessions(&ann.id, Some(&current.id), at(1))
            .await
            .expect("revoke others"),
        2
    );
    let moved = db.store.credential_epoch().await.expect("epoch");
    assert!(moved > epoch, "a revocation advances the credential epoch");
    assert!(find(&db, &keep, at(2)).await.is_some());
    assert_eq!(find(&db, &other1, at(2)).await, None);
    assert_eq!(find(&db, &other2, at(2)).await, None);
    assert!(find(&db, &bobs, at(2)).await.is_some());
    // Already revoked ones are not counted again; without `keep`, all go.
    assert_eq!(
        db.store
            .revoke_user_sessions(&ann.id, None, at(3))
            .await
            .expect("revoke all"),
        1
    );
    assert_eq!(find(&db, &keep, at(4)).await, None);
    assert!(db.store.credential_epoch().await.expect("epoch") > moved);
}

async fn purge_removes_only_dead_sessions(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let (revoked, revoked_digest) = login(&db, &ann, "revoked").await;
    db.store
        .revoke_session(&ann.id, &revoked.id, at(100))
        .await
        .expect("revoke");
    let (_, idle) = login(&db, &ann, "idle").await; // idle expiry at 600
    let (kept, kept_digest) = login(&db, &ann, "kept").await;
    db.store
        .touch_session(&kept.id, at(500), at(1100))
        .await
        .expect("touch");

    assert_eq!(db.store.purge_sessions(at(99)).await.expect("purge"), 0);
    assert_eq!(db.store.purge_sessions(at(100)).await.expect("purge"), 1);
    assert_eq!(db.store.purge_sessions(at(599)).await.expect("purge"), 0);
    assert_eq!(db.store.purge_sessions(at(600)).await.expect("purge"), 1);
    assert_eq!(find(&db, &idle, at(0)).await, None, "deleted");
    assert_eq!(find(&db, &revoked_digest, at(0)).await, None);
    assert!(find(&db, &kept_digest, at(700)).await.is_some());
    assert_eq!(db.store.purge_sessions(at(1100)).await.expect("purge"), 1);
}

async fn totp_steps_only_move_forward(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    assert!(
        !db.store
            .advance_totp_step(&ann.id, 5)
            .await
            .expect("no credential")
    );
    db.store
        .put_pending_totp(&ann.id, b"sealed-1", T0)
        .await
        .expect("pending");
    assert!(
        !db.store
            .advance_totp_step(&ann.id, 5)
            .await
            .expect("unconfirmed"),
        "an unconfirmed credential is no second factor"
    );
    assert!(db.store.confirm_totp(&ann.id, 100).await.expect("confirm"));
    assert!(
        !db.store
            .confirm_totp(&ann.id, 101)
            .await
            .expect("confirm twice")
    );
    for replay in [100, 99, i64::MIN] {
        assert!(
            !db.store
                .advance_totp_step(&ann.id, replay)
                .await
                .expect("advance"),
            "step {replay}"
        );
    }
    assert!(
        db.store
            .advance_totp_step(&ann.id, 101)
            .await
            .expect("advance")
    );
    assert!(
        !db.store
            .advance_totp_step(&ann.id, 101)
            .await
            .expect("replay")
    );
    let totp = db
        .store
        .get_totp(&ann.id)
        .await
        .expect("get")
        .expect("totp");
    assert_eq!(totp.last_step, Some(101));
    assert!(totp.confirmed);
    assert_eq!(totp.sealed_secret, b"sealed-1");
    assert_eq!(totp.created_at, T0);
}

async fn concurrent_totp_advances_let_exactly_one_win(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    confirmed_totp(&db, &ann, 10).await;
    for step in 11..16 {
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let store = db.store.clone();
                let user = ann.id.clone();
                tokio::spawn(async move { store.advance_totp_step(&user, step).await })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            if task.await.expect("task").expect("advance") {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "step {step}");
    }
    let totp = db
        .store
        .get_totp(&ann.id)
        .await
        .expect("get")
        .expect("totp");
    assert_eq!(totp.last_step, Some(15));
}

async fn pending_totp_never_replaces_a_confirmed_one(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let err = db
        .store
        .put_pending_totp(&new_ulid(T0), b"x", T0)
        .await
        .expect_err("unknown user");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    db.store
        .put_pending_totp(&ann.id, b"first", T0)
        .await
        .expect("pending");
    db.store
        .put_pending_totp(&ann.id, b"second", at(1))
        .await
        .expect("replace pending");
    let pending = db
        .store
        .get_totp(&ann.id)
        .await
        .expect("get")
        .expect("totp");
    assert_eq!(pending.sealed_secret, b"second");
    assert!(!pending.confirmed);
    assert!(db.store.confirm_totp(&ann.id, 7).await.expect("confirm"));

    let err = db
        .store
        .put_pending_totp(&ann.id, b"third", at(2))
        .await
        .expect_err("confirmed exists");
    assert_eq!(conflict(&err), &Conflict::TotpConfirmed);
    let kept = db
        .store
        .get_totp(&ann.id)
        .await
        .expect("get")
        .expect("totp");
    assert_eq!(kept.sealed_secret, b"second");
    assert!(kept.confirmed);
    assert_eq!(kept.last_step, Some(7));

    // Deleting removes the credential and the recovery codes; then enrollment starts over.
    db.store
        .replace_recovery_codes(&ann.id, &[TokenDigest::of("r1")], T0)
        .await
        .expect("codes");
    assert!(db.store.delete_totp(&ann.id).await.expect("delete"));
    assert!(!db.store.delete_totp(&ann.id).await.expect("delete twice"));
    assert_eq!(db.store.get_totp(&ann.id).await.expect("get"), None);
    assert_eq!(
        db.store.recovery_codes_left(&ann.id).await.expect("left"),
        0
    );
    db.store
        .put_pending_totp(&ann.id, b"fourth", at(3))
        .await
        .expect("pending again");
}

async fn recovery_codes_are_consumed_once(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let bob = create(&db, "bob", "bob@example.com").await;
    let codes: Vec<TokenDigest> = (0..5).map(|i| TokenDigest::of(&format!("c{i}"))).collect();
    let err = db
        .store
        .replace_recovery_codes(&ann.id, &[codes[0], codes[0]], T0)
        .await
        .expect_err("duplicates");
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    let err = db
        .store
        .replace_recovery_codes(&new_ulid(T0), &codes, T0)
        .await
        .expect_err("unknown user");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(
        db.store.recovery_codes_left(&ann.id).await.expect("left"),
        0
    );

    db.store
        .replace_recovery_codes(&ann.id, &codes, T0)
        .await
        .expect("codes");
    assert!(
        !db.store
            .consume_recovery_code(&bob.id, &codes[0], at(1))
            .await
            .expect("another user's code")
    );
    assert!(
        db.store
            .consume_recovery_code(&ann.id, &codes[0], at(1))
            .await
            .expect("use")
    );
    assert!(
        !db.store
            .consume_recovery_code(&ann.id, &codes[0], at(2))
            .await
            .expect("reuse")
    );
    assert!(
        !db.store
            .consume_recovery_code(&ann.id, &TokenDigest::of("nope"), at(2))
            .await
            .expect("unknown")
    );
    assert_eq!(
        db.store.recovery_codes_left(&ann.id).await.expect("left"),
        4
    );

    // Replacing invalidates the old codes, used or not.
    let fresh = [TokenDigest::of("n1"), TokenDigest::of("n2")];
    db.store
        .replace_recovery_codes(&ann.id, &fresh, at(3))
        .await
        .expect("replace");
    assert!(
        !db.store
            .consume_recovery_code(&ann.id, &codes[1], at(4))
            .await
            .expect("old code")
    );
    assert_eq!(
        db.store.recovery_codes_left(&ann.id).await.expect("left"),
        2
    );
    // Replacing with the very codes used before makes them usable again (a new set).
    db.store
        .replace_recovery_codes(&ann.id, &codes[..1], at(5))
        .await
        .expect("replace");
    assert_eq!(
        db.store.recovery_codes_left(&ann.id).await.expect("left"),
        1
    );
}

async fn concurrent_recovery_code_use_lets_exactly_one_win(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let codes: Vec<TokenDigest> = (0..3).map(|i| TokenDigest::of(&format!("c{i}"))).collect();
    db.store
        .replace_recovery_codes(&ann.id, &codes, T0)
        .await
        .expect("codes");
    for code in &codes {
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let store = db.store.clone();
                let user = ann.id.clone();
                let code = *code;
                tokio::spawn(async move { store.consume_recovery_code(&user, &code, at(1)).await })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            if task.await.expect("task").expect("consume") {
                wins += 1;
            }
        }
        assert_eq!(wins, 1);
    }
    assert_eq!(
        db.store.recovery_codes_left(&ann.id).await.expect("left"),
        0
    );
}

async fn passkey_ids_are_global_and_deleted_only_by_their_owner(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let bob = create(&db, "bob", "bob@example.com").await;
    let mut first = passkey(&ann, b"cred-1");
    first.created_at = at(1);
    db.store.add_passkey(&first).await.expect("add");
    for dup in [passkey(&ann, b"cred-1"), passkey(&bob, b"cred-1")] {
        let err = db.store.add_passkey(&dup).await.expect_err("duplicate id");
        assert_eq!(conflict(&err), &Conflict::PasskeyTaken);
    }
    let mut ghost = passkey(&ann, b"cred-ghost");
    ghost.user_id = new_ulid(T0);
    let err = db
        .store
        .add_passkey(&ghost)
        .await
        .expect_err("unknown user");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(
        db.store
            .list_passkeys(&bob.id)
            .await
            .expect("list")
            .is_empty()
    );

    let mut second = passkey(&ann, b"cred-0");
    second.created_at = at(2);
    second.name = "phone".to_owned();
    db.store.add_passkey(&second).await.expect("add");
    let names: Vec<String> = db
        .store
        .list_passkeys(&ann.id)
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["laptop", "phone"], "oldest first");

    db.store
        .record_passkey_use(b"cred-1", 7, at(10))
        .await
        .expect("use");
    db.store
        .record_passkey_use(b"cred-1", 3, at(11))
        .await
        .expect("older counter");
    db.store
        .record_passkey_use(b"cred-unknown", 3, at(11))
        .await
        .expect("unknown is ignored");
    let used = db
        .store
        .find_passkey(b"cred-1")
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(used.sign_count, 7, "the counter never moves backwards");
    assert_eq!(used.last_used_at, Some(at(11)));
    assert_eq!(used.metadata, first.metadata);
    assert_eq!(used.public_key, first.public_key);

    assert!(
        !db.store
            .delete_passkey(&bob.id, b"cred-1")
            .await
            .expect("not bob's")
    );
    assert!(
        db.store
            .find_passkey(b"cred-1")
            .await
            .expect("find")
            .is_some()
    );
    assert!(
        db.store
            .delete_passkey(&ann.id, b"cred-1")
            .await
            .expect("ann's")
    );
    assert_eq!(db.store.find_passkey(b"cred-1").await.expect("find"), None);
    // Once deleted, the id may be registered again.
    db.store
        .add_passkey(&passkey(&bob, b"cred-1"))
        .await
        .expect("re-add");
}

async fn deleting_a_user_deletes_what_belongs_to_them(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let bob = create(&db, "bob", "bob@example.com").await;
    let (_, digest) = login(&db, &ann, "ann").await;
    let (_, bobs) = login(&db, &bob, "bob").await;
    confirmed_totp(&db, &ann, 1).await;
    db.store
        .replace_recovery_codes(&ann.id, &[TokenDigest::of("r")], T0)
        .await
        .expect("codes");
    db.store
        .add_passkey(&passkey(&ann, b"ann-key"))
        .await
        .expect("passkey");
    db.store
        .append_audit(&event(new_ulid(T0), "login", Some(&ann.id)))
        .await
        .expect("audit");

    assert!(db.store.delete_user(&ann.id).await.expect("delete"));
    assert!(!db.store.delete_user(&ann.id).await.expect("delete twice"));
    assert_eq!(db.store.get_user(&ann.id).await.expect("get"), None);
    assert_eq!(find(&db, &digest, at(1)).await, None);
    assert_eq!(db.store.get_totp(&ann.id).await.expect("totp"), None);
    assert_eq!(
        db.store.recovery_codes_left(&ann.id).await.expect("left"),
        0
    );
    assert_eq!(db.store.find_passkey(b"ann-key").await.expect("find"), None);
    assert!(
        find(&db, &bobs, at(1)).await.is_some(),
        "bob's session stays"
    );
    // The audit trail outlives the user.
    let filter = AuditFilter {
        user_id: Some(ann.id.clone()),
        ..AuditFilter::default()
    };
    assert_eq!(
        db.store.list_audit(&filter, 10).await.expect("audit").len(),
        1
    );
    // The name is free again.
    create(&db, "ann", "ann@example.com").await;
    // The passkey id too (it was deleted, not orphaned).
    let carol = create(&db, "carol", "carol@example.com").await;
    db.store
        .add_passkey(&passkey(&carol, b"ann-key"))
        .await
        .expect("id free");
}

async fn bad_input_is_refused(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let invalid = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::InvalidInput(_)) => {}
        other => panic!("{what}: expected invalid input, got {other:?}"),
    };
    for (username, email) in [("", "e@x"), ("u", ""), ("a\0b", "e@x"), ("u", "e\0@x")] {
        invalid(
            db.store
                .create_user(&new_user(username, email), T0)
                .await
                .map(drop),
            "user",
        );
    }
    let long = "u".repeat(2000);
    invalid(
        db.store
            .create_user(&new_user(&long, "e@x"), T0)
            .await
            .map(drop),
        "long username",
    );
    let mut huge = new_user("huge", "huge@x");
    huge.attributes = object(json!({"blob": "x".repeat(70_000)}));
    invalid(
        db.store.create_user(&huge, T0).await.map(drop),
        "huge attributes",
    );
    invalid(
        db.store.list_users(None, 0).await.map(drop),
        "zero page size",
    );
    invalid(db.store.get_user("").await.map(drop), "empty id");
    invalid(
        db.store.find_user_by_login("a\0").await.map(drop),
        "NUL login",
    );
    let mut s = session(&ann);
    s.amr = vec![String::new()];
    invalid(
        db.store.create_session(&TokenDigest::of("x"), &s).await,
        "empty amr entry",
    );
    let mut s = session(&ann);
    s.amr = vec!["pwd".to_owned(); 100];
    invalid(
        db.store.create_session(&TokenDigest::of("x"), &s).await,
        "too many amr",
    );
    invalid(
        db.store.put_pending_totp(&ann.id, b"", T0).await,
        "empty secret",
    );
    let too_many: Vec<TokenDigest> = (0..101).map(|i| TokenDigest::of(&format!("{i}"))).collect();
    invalid(
        db.store
            .replace_recovery_codes(&ann.id, &too_many, T0)
            .await,
        "too many codes",
    );
    let mut p = passkey(&ann, b"");
    invalid(db.store.add_passkey(&p).await, "empty credential id");
    p.credential_id = b"k".to_vec();
    p.sign_count = -1;
    invalid(db.store.add_passkey(&p).await, "negative counter");
    invalid(
        db.store.record_passkey_use(b"k", i64::MAX, T0).await,
        "counter overflow",
    );
    let mut e = event(new_ulid(T0), "login", None);
    e.outcome = "maybe".to_owned();
    invalid(db.store.append_audit(&e).await, "unknown outcome");
    invalid(
        db.store
            .list_audit(&AuditFilter::default(), 0)
            .await
            .map(drop),
        "zero limit",
    );
    // None of it was written.
    assert_eq!(
        db.store
            .list_users(None, 100)
            .await
            .expect("list")
            .users
            .len(),
        1
    );
    assert!(
        db.store
            .list_user_sessions(&ann.id, T0)
            .await
            .expect("sessions")
            .is_empty()
    );
    assert_eq!(db.store.get_totp(&ann.id).await.expect("totp"), None);
    assert!(
        db.store
            .list_passkeys(&ann.id)
            .await
            .expect("keys")
            .is_empty()
    );
    assert!(
        db.store
            .list_audit(&AuditFilter::default(), 10)
            .await
            .expect("audit")
            .is_empty()
    );
}

async fn users_round_trip(db: TestDatabase) {
    let mut input = new_user("Ann", "Ann@Example.com");
    input.name = Some("Ann Example".to_owned());
    input.locale = Some("de-CH".to_owned());
    input.attributes = object(json!({"department": "physics", "level": 3}));
    // Sub-microsecond precision is dropped by both backends alike.
    let created = db
        .store
        .create_user(&input, datetime!(2026-11-23 10:00:00.123456789 +01:00))
        .await
        .expect("create");
    assert_eq!(
        created.created_at,
        datetime!(2026-11-23 09:00:00.123456 UTC)
    );
    assert_eq!(created.status, UserStatus::Active);
    assert!(!created.email_verified);
    let got = db.store.get_user(&input.id).await.expect("get");
    assert_eq!(got.as_ref(), Some(&created));
    for login in ["ann", "ANN", "ann@example.com", "ANN@EXAMPLE.COM"] {
        let found = db.store.find_user_by_login(login).await.expect("find");
        assert_eq!(found.as_ref(), Some(&created), "{login}");
    }
    assert_eq!(
        db.store
            .find_user_by_login("ann@example")
            .await
            .expect("find"),
        None
    );

    let verified = db
        .store
        .update_user(
            &input.id,
            &UserUpdate {
                email_verified: Some(true),
                name: Some(None),
                attributes: Some(object(json!({"department": "chemistry"}))),
                ..UserUpdate::default()
            },
            at(10),
        )
        .await
        .expect("update")
        .expect("exists");
    assert!(verified.email_verified);
    assert_eq!(verified.name, None);
    assert_eq!(verified.locale.as_deref(), Some("de-CH"));
    assert_eq!(verified.updated_at, at(10));
    assert_eq!(
        db.store.get_user(&input.id).await.expect("get").as_ref(),
        Some(&verified)
    );
    // A new address is unverified again and the old one is free.
    let moved = db
        .store
        .update_user(
            &input.id,
            &UserUpdate {
                email: Some("ann@example.org".to_owned()),
                ..UserUpdate::default()
            },
            at(11),
        )
        .await
        .expect("update")
        .expect("exists");
    assert!(!moved.email_verified);
    assert_eq!(
        db.store
            .find_user_by_login("ann@example.com")
            .await
            .expect("find"),
        None
    );
    create(&db, "other", "ANN@example.com").await;

    assert_eq!(
        db.store.password_hash(&input.id).await.expect("hash"),
        input.password_hash
    );
    assert!(
        db.store
            .set_password_hash(&input.id, "$argon2id$new", at(12))
            .await
            .expect("set")
    );
    assert_eq!(
        db.store
            .password_hash(&input.id)
            .await
            .expect("hash")
            .as_deref(),
        Some("$argon2id$new")
    );
    assert!(
        !db.store
            .set_password_hash(&new_ulid(T0), "$argon2id$x", at(12))
            .await
            .expect("unknown")
    );
    let mut passwordless = new_user("pia", "pia@example.com");
    passwordless.password_hash = None;
    db.store
        .create_user(&passwordless, T0)
        .await
        .expect("create");
    assert_eq!(
        db.store
            .password_hash(&passwordless.id)
            .await
            .expect("hash"),
        None
    );
    let after = db
        .store
        .get_user(&input.id)
        .await
        .expect("get")
        .expect("ann");
    assert_eq!(after.updated_at, at(12));
}

async fn user_pages_walk_every_user_once(db: TestDatabase) {
    let mut expected = BTreeSet::new();
    for i in 0..23 {
        let mut u = new_user(&format!("user{i}"), &format!("user{i}@example.com"));
        u.id = new_ulid(at(i));
        db.store.create_user(&u, T0).await.expect("create");
        expected.insert(u.id);
    }
    for page_size in [1, 5, 23, 100] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = db
                .store
                .list_users(after.as_deref(), page_size)
                .await
                .expect("page");
            assert!(page.users.len() <= page_size as usize);
            seen.extend(page.users.into_iter().map(|u| u.id));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "ordered by id");
        assert_eq!(
            seen.into_iter().collect::<BTreeSet<_>>(),
            expected,
            "{page_size}"
        );
    }
    let last = expected.iter().next_back().expect("users");
    let empty = db.store.list_users(Some(last), 10).await.expect("past end");
    assert!(empty.users.is_empty());
    assert_eq!(empty.next, None);
}

async fn sessions_round_trip_and_rotate(db: TestDatabase) {
    let ann = create(&db, "ann", "ann@example.com").await;
    let (first, digest) = login(&db, &ann, "first").await;
    let mut second = session(&ann);
    second.created_at = at(5);
    second.ip = None;
    second.user_agent = None;
    let second_digest = TokenDigest::of("second");
    db.store
        .create_session(&second_digest, &second)
        .await
        .expect("create");
    let err = db
        .store
        .create_session(&second_digest, &session(&ann))
        .await
        .expect_err("digest reused");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        find(&db, &second_digest, at(6)).await.as_ref(),
        Some(&second)
    );
    let listed = db
        .store
        .list_user_sessions(&ann.id, at(6))
        .await
        .expect("list");
    assert_eq!(listed, [second.clone(), first.clone()], "newest first");

    let mut stepped_up = session(&ann);
    stepped_up.created_at = at(7);
    stepped_up.auth_time = at(7);
    stepped_up.amr = vec!["pwd".to_owned(), "otp".to_owned(), "mfa".to_owned()];
    stepped_up.acr = "urn:trustgate:mfa".to_owned();
    let fresh = TokenDigest::of("fresh");
    assert!(
        db.store
            .rotate_session(&first.id, &fresh, &stepped_up, at(7))
            .await
            .expect("rotate")
    );
    assert_eq!(find(&db, &digest, at(8)).await, None, "old secret is dead");
    assert_eq!(find(&db, &fresh, at(8)).await.as_ref(), Some(&stepped_up));
    assert!(
        !db.store
            .rotate_session(&first.id, &TokenDigest::of("again"), &session(&ann), at(9))
            .await
            .expect("rotate twice")
    );
}

async fn audit_is_newest_first_and_filtered(db: TestDatabase) {
    let ann = "01ANN";
    let bob = "01BOB";
    let mut ids = Vec::new();
    let kinds = ["login", "login_failed", "login", "mfa_enrolled", "login"];
    for (i, kind) in kinds.iter().enumerate() {
        let id = new_ulid(at(i64::try_from(i).expect("small")));
        let user = if i % 2 == 0 { ann } else { bob };
        let mut e = event(id.clone(), kind, Some(user));
        e.at = at(i64::try_from(i).expect("small"));
        if *kind == "login_failed" {
            e.outcome = "failure".to_owned();
        }
        db.store.append_audit(&e).await.expect("append");
        ids.push(id);
    }
    let mut system = event(new_ulid(at(10)), "key_rotated", None);
    system.at = at(10);
    db.store.append_audit(&system).await.expect("append");
    let err = db
        .store
        .append_audit(&system)
        .await
        .expect_err("duplicate id");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let list = |filter: AuditFilter, limit: u32| {
        let store = db.store.clone();
        async move {
            store
                .list_audit(&filter, limit)
                .await
                .expect("list")
                .into_iter()
                .map(|r| r.event.id)
                .collect::<Vec<_>>()
        }
    };
    let all = list(AuditFilter::default(), 100).await;
    let mut newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    newest_first.insert(0, system.id.clone());
    assert_eq!(all, newest_first);
    assert_eq!(list(AuditFilter::default(), 2).await, newest_first[..2]);

    let anns = list(
        AuditFilter {
            user_id: Some(ann.to_owned()),
            ..AuditFilter::default()
        },
        100,
    )
    .await;
    assert_eq!(anns, [ids[4].clone(), ids[2].clone(), ids[0].clone()]);
    let logins = list(
        AuditFilter {
            kind: Some("login".to_owned()),
            ..AuditFilter::default()
        },
        100,
    )
    .await;
    assert_eq!(logins, [ids[4].clone(), ids[2].clone(), ids[0].clone()]);
    let bobs_logins = list(
        AuditFilter {
            user_id: Some(bob.to_owned()),
            kind: Some("login".to_owned()),
            ..AuditFilter::default()
        },
        100,
    )
    .await;
    assert!(bobs_logins.is_empty());
    // Paging backwards in time with `before`.
    let older = list(
        AuditFilter {
            kind: Some("login".to_owned()),
            before: Some(ids[4].clone()),
            ..AuditFilter::default()
        },
        1,
    )
    .await;
    assert_eq!(older, [ids[2].clone()]);

    let stored = db
        .store
        .list_audit(
            &AuditFilter {
                kind: Some("login_failed".to_owned()),
                ..AuditFilter::default()
            },
            10,
        )
        .await
        .expect("list");
    let mut expected = event(ids[1].clone(), "login_failed", Some(bob));
    expected.at = at(1);
    expected.outcome = "failure".to_owned();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event, expected);
    assert!(stored[0].seq.is_some() && stored[0].hash.is_some());
}

async fn audit_batches_are_all_or_nothing(db: TestDatabase) {
    let batch = |n: i64, from: i64| -> Vec<AuditEvent> {
        (from..from + n)
            .map(|i| {
                let mut e = event(
                    new_ulid(at(i)),
                    "authorization_decision",
                    Some(&format!("u{i}")),
                );
                e.at = at(i);
                e.detail = object(json!({"resource": format!("document:{i}")}));
                e
            })
            .collect()
    };
    // More rows than one INSERT of a batch carries.
    let first = batch(250, 0);
    db.store.append_audits(&first).await.expect("batch");
    db.store.append_audits(&[]).await.expect("empty batch");
    let all = db
        .store
        .list_audit(&AuditFilter::default(), 1000)
        .await
        .expect("audit");
    assert_eq!(all.len(), 250);
    let mut written: Vec<AuditEvent> = all.into_iter().rev().map(|r| r.event).collect();
    written.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(written, first);

    // One bad event (or one duplicate id) and nothing of the batch is written.
    let mut bad = batch(150, 1000);
    bad[149].outcome = "maybe".to_owned();
    let err = db.store.append_audits(&bad).await.expect_err("bad outcome");
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    let mut duplicate = batch(150, 2000);
    duplicate[120].id = first[3].id.clone();
    let err = db
        .store
        .append_audits(&duplicate)
        .await
        .expect_err("duplicate id");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let after = db
        .store
        .list_audit(&AuditFilter::default(), 1000)
        .await
        .expect("audit");
    assert_eq!(after.len(), 250, "a failed batch left rows behind");
}
