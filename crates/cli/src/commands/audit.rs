//! `trustgate audit`: list, follow, export and verify the audit trail through
//! `/admin/v1/audit` (API key with the `auditor` permission).

use std::io::Write as _;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::Failure;
use super::user::{segment, user_path};
use crate::client::{Client, ClientArgs, print_json};

/// Events fetched per request by `tail` and `export`.
const PAGE: u32 = 1000;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List events, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Only events older than this event id (paging).
        #[arg(long)]
        before: Option<String>,
        /// Most events to print (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Print new events as JSON lines as they are written (both chains), until interrupted.
    Tail {
        #[command(flatten)]
        filter: FilterArgs,
        /// Seconds between polls.
        #[arg(long, default_value_t = 2)]
        interval: u64,
        /// Start at the beginning of the trail instead of its current end.
        #[arg(long)]
        from_start: bool,
    },
    /// Write every matching event as JSON lines to standard output, oldest first per chain.
    Export {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Verify the hash chains and their signed anchors; exit 1 if anything was tampered with.
    Verify {
        /// Rows the server checks per request (1 to 200000).
        #[arg(long, default_value_t = 20_000)]
        budget: u32,
    },
}

/// Which events.
#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// Only events concerning this user (id, username or email).
    #[arg(long)]
    user: Option<String>,
    /// Only events by this principal (e.g. service:ID, user:ID).
    #[arg(long)]
    principal: Option<String>,
    /// Only events about this resource (e.g. document:1).
    #[arg(long)]
    resource: Option<String>,
    /// Only this outcome: success, failure or denied.
    #[arg(long)]
    outcome: Option<String>,
    /// Only this kind (login, authorization_decision, oauth_token_issued, ...).
    #[arg(long)]
    kind: Option<String>,
    /// Only this chain: recorded or streamed.
    #[arg(long)]
    chain: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only events before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
}

impl FilterArgs {
    /// The query string of the filter (`&name=value…`).
    async fn query(&self, client: &Client) -> Result<String, Failure> {
        let mut q = String::new();
        if let Some(user) = &self.user {
            // Accept a username or email too: the filter needs the id.
            let found = client.call(Method::GET, &user_path(user, ""), None).await?;
            let id = found
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| Failure::Failed(format!("no id for user {user}")))?;
            q.push_str(&format!("&user_id={}", segment(id)));
        }
        for (name, value) in [
            ("principal", &self.principal),
            ("resource", &self.resource),
            ("outcome", &self.outcome),
            ("kind", &self.kind),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = value {
                q.push_str(&format!("&{name}={}", segment(v)));
            }
        }
        Ok(q)
    }

    fn chains(&self) -> Result<Vec<&'static str>, Failure> {
        match self.chain.as_deref() {
            None => Ok(vec!["recorded", "streamed"]),
            Some("recorded") => Ok(vec!["recorded"]),
            Some("streamed") => Ok(vec!["streamed"]),
            Some(other) => Err(Failure::Usage(format!(
                "--chain {other}: expected recorded or streamed"
            ))),
        }
    }
}

/// One page of `chain` after position `after`: its events and the position to continue after.
async fn follow(
    client: &Client,
    chain: &str,
    after: i64,
    filter: &str,
) -> Result<(Vec<Value>, i64), Failure> {
    let path = format!("/admin/v1/audit?chain={chain}&after_seq={after}&limit={PAGE}{filter}");
    let page = client.call(Method::GET, &path, None).await?;
    let events = page
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let next = page.get("next").and_then(Value::as_i64).unwrap_or(after);
    Ok((events, next))
}

fn print_line(out: &mut impl std::io::Write, event: &Value) -> Result<(), Failure> {
    writeln!(out, "{event}").map_err(|e| Failure::Failed(format!("writing: {e}")))
}

/// Runs an `audit` command.
pub async fn run(command: AuditCommand, args: &ClientArgs) -> Result<(), Failure> {
    let client = Client::new(args)?;
    match command {
        AuditCommand::List {
            filter,
            before,
            limit,
        } => {
            let mut path = format!("/admin/v1/audit?limit={limit}");
            path.push_str(&filter.query(&client).await?);
            if let Some(chain) = &filter.chain {
                path.push_str(&format!("&chain={}", segment(chain)));
            }
            if let Some(before) = before {
                path.push_str(&format!("&before={}", segment(&before)));
            }
            print_json(&client.call(Method::GET, &path, None).await?);
        }
        AuditCommand::Export { filter } => {
            let query = filter.query(&client).await?;
            let mut out = std::io::stdout().lock();
            for chain in filter.chains()? {
                let mut after = 0;
                loop {
                    let (events, next) = follow(&client, chain, after, &query).await?;
                    for event in &events {
                        print_line(&mut out, event)?;
                    }
                    if events.len() < PAGE as usize {
                        break;
                    }
                    after = next;
                }
            }
            out.flush()
                .map_err(|e| Failure::Failed(format!("writing: {e}")))?;
        }
        AuditCommand::Tail {
            filter,
            interval,
            from_start,
        } => {
            let query = filter.query(&client).await?;
            let chains = filter.chains()?;
            // The current end of each chain, unless following from the start.
            let mut positions = Vec::new();
            for chain in &chains {
                let mut after = 0;
                if !from_start {
                    let path = format!("/admin/v1/audit?chain={chain}&limit=1");
                    let newest = client.call(Method::GET, &path, None).await?;
                    after = newest
                        .pointer("/events/0/seq")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                }
                positions.push(after);
            }
            loop {
                let mut out = std::io::stdout().lock();
                let mut full = false;
                for (chain, after) in chains.iter().zip(positions.iter_mut()) {
                    let (events, next) = follow(&client, chain, *after, &query).await?;
                    for event in &events {
                        print_line(&mut out, event)?;
                    }
                    full |= events.len() == PAGE as usize;
                    *after = next;
                }
                out.flush()
                    .map_err(|e| Failure::Failed(format!("writing: {e}")))?;
                drop(out);
                if !full {
                    tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
                }
            }
        }
        AuditCommand::Verify { budget } => {
            let mut cursor: Option<String> = None;
            let mut problems = Vec::new();
            let mut more = 0;
            let (mut records, mut anchors, mut legacy) = (0, 0, 0);
            let mut chains = Vec::new();
            let mut starts = Vec::new();
            loop {
                let mut path = format!("/admin/v1/audit/verify?budget={budget}");
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={}", segment(c)));
                }
                let page = client.call(Method::GET, &path, None).await?;
                let count = |name: &str| page.get(name).and_then(Value::as_u64).unwrap_or(0);
                records += count("records_checked");
                anchors += count("anchors_checked");
                legacy += count("unchained_before_chains");
                more += count("more_problems");
                let list = |name: &str| {
                    page.get(name)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                };
                problems.extend(list("problems"));
                chains.extend(list("chains"));
                starts.extend(list("starts"));
                if page.get("done").and_then(Value::as_bool) == Some(true) {
                    break;
                }
                cursor = page
                    .get("cursor")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                if cursor.is_none() {
                    return Err(Failure::Failed(
                        "the server gave no cursor to continue".into(),
                    ));
                }
            }
            let total = problems.len() as u64 + more;
            print_json(&serde_json::json!({
                "ok": total == 0,
                "records_checked": records,
                "anchors_checked": anchors,
                "events_before_chains": legacy,
                "starts": starts,
                "chains": chains,
                "problems": problems,
                "more_problems": more,
            }));
            if total > 0 {
                for p in &problems {
                    eprintln!(
                        "{} {} seq {} id {}: {}",
                        p.get("chain").and_then(Value::as_str).unwrap_or("?"),
                        p.get("code").and_then(Value::as_str).unwrap_or("?"),
                        p.get("seq")
                            .map_or_else(|| "-".to_owned(), Value::to_string),
                        p.get("id").and_then(Value::as_str).unwrap_or("-"),
                        p.get("message").and_then(Value::as_str).unwrap_or("")
                    );
                }
                return Err(Failure::Failed(format!(
                    "the audit trail failed verification: {total} problem(s)"
                )));
            }
            eprintln!("audit trail verified: {records} records, {anchors} anchors");
        }
    }
    Ok(())
}
