//! The cost of `synchronous=FULL` (the default: every commit synced to the disk before it is
//! acknowledged) against `NORMAL` (synced at checkpoints), on SQLite files in the same
//! directory, in the same run: single-tuple relationship writes and session creations (the
//! write of every login), one transaction each, one writer, as the API issues them. Rounds
//! alternate between the modes so drift in the machine's disk affects both alike; the figure
//! that matters is the ratio FULL / NORMAL of writes per second.
//!
//! `cargo bench -p trustgate-bench --bench sqlite_sync` (`TRUSTGATE_BENCH_SYNC_WRITES`, default
//! 2000 writes per kind and round; the data lives in the system's temporary directory, set
//! `TMPDIR` to measure another disk).

use std::time::{Duration, Instant};

use time::OffsetDateTime;
use trustgate_core::TokenDigest;
use trustgate_store::{ConnectOptions, Synchronous, connect};
use trustgate_store_api::{NewUser, OnDuplicate, OnMissing, Session, TupleKey, WriteOptions};

const ROUNDS: usize = 3;

struct Rates {
    tuples: Vec<f64>,
    sessions: Vec<f64>,
}

async fn round(mode: Synchronous, writes: usize, dir: &std::path::Path, n: usize) -> (f64, f64) {
    let url = format!(
        "sqlite://{}",
        dir.join(format!("{mode:?}-{n}.db")).display()
    );
    let options = ConnectOptions {
        sqlite_synchronous: mode,
        max_connections: 1,
        ..ConnectOptions::default()
    };
    let store = connect(&url, &options).await.expect("open");
    store.migrate().await.expect("migrate");
    let now = OffsetDateTime::now_utc();
    store
        .create_fga_store("s", "bench", now)
        .await
        .expect("store");
    let user = store
        .create_user(
            &NewUser {
                id: "01JF3Z9Q7W8X2Y4Z6A8B0C2D4E".into(),
                username: "bench".into(),
                email: "bench@example.com".into(),
                name: None,
                locale: None,
                attributes: serde_json::Map::new(),
                password_hash: None,
            },
            now,
        )
        .await
        .expect("user");
    let options = WriteOptions {
        on_duplicate: OnDuplicate::Error,
        on_missing: OnMissing::Error,
    };
    let started = Instant::now();
    for i in 0..writes {
        let tuple = TupleKey::new(format!("doc:{i}"), "viewer", format!("user:{i}"));
        store
            .write_tuples("s", &[tuple], &[], options, now)
            .await
            .expect("write");
    }
    let tuples = rate(writes, started.elapsed());
    let started = Instant::now();
    for i in 0..writes {
        let session = Session {
            id: format!("01JF3Z9Q7W8X2Y4Z6A{i:08}"),
            user_id: user.id.clone(),
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now + time::Duration::hours(1),
            absolute_expires_at: now + time::Duration::hours(8),
            auth_time: now,
            amr: vec!["pwd".into()],
            acr: "1".into(),
            ip: None,
            user_agent: None,
        };
        store
            .create_session(&TokenDigest::of(&format!("session-{n}-{i}")), &session)
            .await
            .expect("session");
    }
    let sessions = rate(writes, started.elapsed());
    store.close().await;
    (tuples, sessions)
}

fn rate(writes: usize, elapsed: Duration) -> f64 {
    writes as f64 / elapsed.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent: measure only on request.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let writes: usize = std::env::var("TRUSTGATE_BENCH_SYNC_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("trustgate-sync-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench directory");
    let mut normal = Rates {
        tuples: Vec::new(),
        sessions: Vec::new(),
    };
    let mut full = Rates {
        tuples: Vec::new(),
        sessions: Vec::new(),
    };
    for n in 0..ROUNDS {
        for (mode, rates) in [
            (Synchronous::Normal, &mut normal),
            (Synchronous::Full, &mut full),
        ] {
            let (t, s) = runtime.block_on(round(mode, writes, &dir, n));
            rates.tuples.push(t);
            rates.sessions.push(s);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (nt, ns) = (median(&mut normal.tuples), median(&mut normal.sessions));
    let (ft, fs) = (median(&mut full.tuples), median(&mut full.sessions));
    println!("SQLite commit durability, {writes} writes per kind, median of {ROUNDS} rounds");
    println!("| write | NORMAL writes/s | FULL writes/s | FULL / NORMAL |");
    println!("|---|---|---|---|");
    println!(
        "| tuple (one per transaction) | {nt:.0} | {ft:.0} | {:.2} |",
        ft / nt
    );
    println!("| session (login) | {ns:.0} | {fs:.0} | {:.2} |", fs / ns);
}
