//! Machine identities: clients of `/admin/v1/service-accounts`, `/admin/v1/api-keys` and
//! `/admin/v1/roles`.
//!
//! `service create|list|get|disable|enable|delete` manage service accounts (a service is named by
//! its id or its name); `service bind-certificate|unbind-certificate|certificates` manage the
//! client-certificate names (`--spiffe-id` or `--subject-dn`) that authenticate as the account
//! on the mutual-TLS listener. `apikey create --service S --scope ...` issues a key and prints it once
//! (`--json` prints the whole answer as JSON instead); `apikey list|get|revoke|rotate` manage
//! keys by id (`rotate ID --overlap 1h` keeps the old key valid for the overlap). `role
//! grant|revoke|list` manage the roles a service account (`service:NAME_OR_ID`) or a user
//! (`user:USER_ID`) holds. Durations are `<n>s`, `<n>m`, `<n>h` or `<n>d`.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::Failure;
use super::user::segment;
use crate::client::{Client, ClientArgs, print_json};

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a service account (it holds no role until one is granted).
    Create {
        /// Unique name (letters, digits, '-', '_', '.').
        name: String,
        /// Who is responsible for it.
        #[arg(long)]
        owner: Option<String>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List service accounts.
    List,
    /// Show a service account with its roles.
    Get {
        /// Id or name.
        service: String,
    },
    /// Disable a service account: its keys stop at once.
    Disable {
        /// Id or name.
        service: String,
    },
    /// Enable a disabled service account again.
    Enable {
        /// Id or name.
        service: String,
    },
    /// Delete a service account with its keys and roles.
    Delete {
        /// Id or name.
        service: String,
    },
    /// Bind a client-certificate name: a certificate naming it on the mutual-TLS listener
    /// authenticates as this account.
    BindCertificate {
        /// Id or name.
        service: String,
        #[command(flatten)]
        name: CertificateNameArgs,
    },
    /// Unbind a client-certificate name.
    UnbindCertificate {
        /// Id or name.
        service: String,
        #[command(flatten)]
        name: CertificateNameArgs,
    },
    /// List the client-certificate names bound to a service account.
    Certificates {
        /// Id or name.
        service: String,
    },
}

/// A client certificate's name: its SPIFFE ID or its subject DN.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct CertificateNameArgs {
    /// The SPIFFE ID (URI SAN), e.g. spiffe://example.org/ns/prod/sa/billing.
    #[arg(long, value_name = "URI")]
    spiffe_id: Option<String>,
    /// The subject DN, RFC 4514 (as `openssl x509 -noout -subject -nameopt RFC2253` prints it).
    #[arg(long, value_name = "DN")]
    subject_dn: Option<String>,
}

impl CertificateNameArgs {
    fn json(&self) -> Value {
        match (&self.spiffe_id, &self.subject_dn) {
            (Some(id), _) => json!({ "spiffe_id": id }),
            (None, dn) => json!({ "subject_dn": dn }),
        }
    }

    fn query(&self) -> String {
        let encode =
            |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
        match (&self.spiffe_id, &self.subject_dn) {
            (Some(id), _) => format!("spiffe_id={}", encode(id)),
            (None, dn) => format!("subject_dn={}", encode(dn.as_deref().unwrap_or_default())),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Issue an API key for a service account and print it (shown this once).
    Create {
        /// The owning service account (id or name).
        #[arg(long)]
        service: String,
        /// A permission the key is limited to (repeat): admin, user_admin, client_admin,
        /// auditor, store:STORE_ID:store_admin|writer|reader. The owner must hold it.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime, e.g. 90d (no expiry when omitted).
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<u64>,
        /// Requests per minute (per replica).
        #[arg(long)]
        rate_limit: Option<u32>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        /// Print the whole answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets).
    List {
        /// Only the keys of this service account (id or name).
        #[arg(long)]
        service: Option<String>,
    },
    /// Show a key.
    Get {
        /// Key id.
        id: String,
    },
    /// Revoke a key at once.
    Revoke {
        /// Key id.
        id: String,
    },
    /// Issue a replacement; the old key stays valid for the overlap.
    Rotate {
        /// Key id.
        id: String,
        /// How long the old key keeps working, e.g. 1h (0s ends it now).
        #[arg(long, value_parser = parse_duration)]
        overlap: u64,
        /// Lifetime of the new key (the old key's lifetime when omitted).
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<u64>,
        /// Print the whole answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Grant a role: admin, user_admin, client_admin, auditor, store:STORE_ID:store_admin|writer|reader.
    Grant {
        /// service:NAME_OR_ID or user:USER_ID.
        subject: String,
        /// The role.
        role: String,
    },
    /// Revoke a role.
    Revoke {
        /// service:NAME_OR_ID or user:USER_ID.
        subject: String,
        /// The role.
        role: String,
    },
    /// List the roles granted to a subject.
    List {
        /// service:NAME_OR_ID or user:USER_ID.
        subject: String,
    },
}

/// `<n>s`, `<n>m`, `<n>h`, `<n>d` (or plain seconds) as seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (number, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => s.split_at(at),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 90d, 1h, 30m or 45s"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{s:?}: too long"))
}

/// Every service account, following the pages.
async fn all_accounts(api: &Client) -> Result<Vec<Value>, Failure> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/admin/v1/service-accounts?limit=100&after={}", segment(a)),
            None => "/admin/v1/service-accounts?limit=100".to_owned(),
        };
        let page = api.call(Method::GET, &path, None).await?;
        all.extend(
            page["service_accounts"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return Ok(all),
        }
    }
}

/// The id of the service account `service` names (an id, else a name).
async fn service_id(api: &Client, service: &str) -> Result<String, Failure> {
    let path = format!("/admin/v1/service-accounts/{}", segment(service));
    if let Ok(found) = api.call(Method::GET, &path, None).await
        && let Some(id) = found["id"].as_str()
    {
        return Ok(id.to_owned());
    }
    all_accounts(api)
        .await?
        .iter()
        .find(|a| a["name"] == service)
        .and_then(|a| a["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| Failure::Failed(format!("no service account with id or name {service:?}")))
}

/// `service:<name>` → `service:<id>`; other subjects as given.
async fn subject(api: &Client, subject: &str) -> Result<String, Failure> {
    match subject.split_once(':') {
        Some(("service", service)) => Ok(format!("service:{}", service_id(api, service).await?)),
        _ => Ok(subject.to_owned()),
    }
}

/// Runs a `service` command.
pub async fn service(command: ServiceCommand, args: &ClientArgs) -> Result<(), Failure> {
    let api = Client::new(args)?;
    let answer = match command {
        ServiceCommand::Create {
            name,
            owner,
            description,
        } => {
            let body = json!({ "name": name, "owner": owner, "description": description });
            api.call(Method::POST, "/admin/v1/service-accounts", Some(&body))
                .await?
        }
        ServiceCommand::List => json!({ "service_accounts": all_accounts(&api).await? }),
        ServiceCommand::Get { service } => {
            let id = service_id(&api, &service).await?;
            api.call(
                Method::GET,
                &format!("/admin/v1/service-accounts/{}", segment(&id)),
                None,
            )
            .await?
        }
        ServiceCommand::Disable { service } => {
            let id = service_id(&api, &service).await?;
            api.call(
                Method::POST,
                &format!("/admin/v1/service-accounts/{}/disable", segment(&id)),
                None,
            )
            .await?
        }
        ServiceCommand::Enable { service } => {
            let id = service_id(&api, &service).await?;
            api.call(
                Method::POST,
                &format!("/admin/v1/service-accounts/{}/enable", segment(&id)),
                None,
            )
            .await?
        }
        ServiceCommand::Delete { service } => {
            let id = service_id(&api, &service).await?;
            api.call(
                Method::DELETE,
                &format!("/admin/v1/service-accounts/{}", segment(&id)),
                None,
            )
            .await?;
            json!({ "deleted": id })
        }
        ServiceCommand::BindCertificate { service, name } => {
            let id = service_id(&api, &service).await?;
            api.call(
                Method::POST,
                &format!("/admin/v1/service-accounts/{}/certificates", segment(&id)),
                Some(&name.json()),
            )
            .await?
        }
        ServiceCommand::UnbindCertificate { service, name } => {
            let id = service_id(&api, &service).await?;
            api.call(
                Method::DELETE,
                &format!(
                    "/admin/v1/service-accounts/{}/certificates?{}",
                    segment(&id),
                    name.query()
                ),
                None,
            )
            .await?;
            json!({ "unbound": name.json(), "service_account": id })
        }
        ServiceCommand::Certificates { service } => {
            let id = service_id(&api, &service).await?;
            api.call(
                Method::GET,
                &format!("/admin/v1/service-accounts/{}/certificates", segment(&id)),
                None,
            )
            .await?
        }
    };
    print_json(&answer);
    Ok(())
}

/// Prints a freshly issued key: the key alone on its own line (easy to capture), then what to
/// know about it; or everything as JSON.
fn print_issued(answer: &Value, as_json: bool) {
    if as_json {
        print_json(answer);
        return;
    }
    println!("{}", answer["key"].as_str().unwrap_or_default());
    let key = &answer["api_key"];
    eprintln!(
        "API key {} (scopes: {}; expires: {}). The key above is shown this once: store it now.",
        key["id"].as_str().unwrap_or_default(),
        key["scopes"]
            .as_array()
            .map(|s| s
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
        key["expires_at"].as_str().unwrap_or("never"),
    );
}

/// Runs an `apikey` command.
pub async fn apikey(command: ApiKeyCommand, args: &ClientArgs) -> Result<(), Failure> {
    let api = Client::new(args)?;
    let answer = match command {
        ApiKeyCommand::Create {
            service,
            scopes,
            expires_in,
            rate_limit,
            description,
            json: as_json,
        } => {
            let id = service_id(&api, &service).await?;
            let body = json!({
                "scopes": scopes,
                "expires_in_secs": expires_in,
                "rate_limit_per_minute": rate_limit,
                "description": description,
            });
            let answer = api
                .call(
                    Method::POST,
                    &format!("/admin/v1/service-accounts/{}/api-keys", segment(&id)),
                    Some(&body),
                )
                .await?;
            print_issued(&answer, as_json);
            return Ok(());
        }
        ApiKeyCommand::List { service } => {
            let path = match service {
                Some(service) => format!(
                    "/admin/v1/api-keys?service={}",
                    segment(&service_id(&api, &service).await?)
                ),
                None => "/admin/v1/api-keys".to_owned(),
            };
            api.call(Method::GET, &path, None).await?
        }
        ApiKeyCommand::Get { id } => {
            api.call(
                Method::GET,
                &format!("/admin/v1/api-keys/{}", segment(&id)),
                None,
            )
            .await?
        }
        ApiKeyCommand::Revoke { id } => {
            api.call(
                Method::DELETE,
                &format!("/admin/v1/api-keys/{}", segment(&id)),
                None,
            )
            .await?
        }
        ApiKeyCommand::Rotate {
            id,
            overlap,
            expires_in,
            json: as_json,
        } => {
            let body = json!({ "overlap_secs": overlap, "expires_in_secs": expires_in });
            let answer = api
                .call(
                    Method::POST,
                    &format!("/admin/v1/api-keys/{}/rotate", segment(&id)),
                    Some(&body),
                )
                .await?;
            print_issued(&answer, as_json);
            return Ok(());
        }
    };
    print_json(&answer);
    Ok(())
}

/// Runs a `role` command.
pub async fn role(command: RoleCommand, args: &ClientArgs) -> Result<(), Failure> {
    let api = Client::new(args)?;
    let answer = match command {
        RoleCommand::Grant { subject: s, role } => {
            let body = json!({ "subject": subject(&api, &s).await?, "role": role });
            api.call(Method::POST, "/admin/v1/roles", Some(&body))
                .await?
        }
        RoleCommand::Revoke { subject: s, role } => {
            let body = json!({ "subject": subject(&api, &s).await?, "role": role });
            api.call(Method::POST, "/admin/v1/roles/revoke", Some(&body))
                .await?
        }
        RoleCommand::List { subject: s } => {
            let s = subject(&api, &s).await?;
            api.call(
                Method::GET,
                &format!("/admin/v1/roles?subject={}", segment(&s)),
                None,
            )
            .await?
        }
    };
    print_json(&answer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_documented_units() {
        assert_eq!(parse_duration("90d"), Ok(90 * 86_400));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("45s"), Ok(45));
        assert_eq!(parse_duration("45"), Ok(45));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
