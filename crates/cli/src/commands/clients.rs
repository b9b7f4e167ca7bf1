//! Registered OAuth clients: a client of `/admin/v1/clients`.
//!
//! `client create` prints the registered client as JSON with `client_id` and, for the
//! `client_secret_*` methods, `client_secret`: the only time the secret is shown (store it
//! now; `client rotate-secret` issues a new one). `client update ID` reads the client, changes
//! only the fields given as flags and sends the whole registration back: a list flag
//! (`--redirect-uri`, `--scope`, ...) replaces the whole list (an empty value, `--audience ''`,
//! empties it), `--backchannel-logout-uri ''` removes the URI, `--exchange-audience ''` removes
//! the token exchange policy, and the switches take an optional value (`--skip-consent=false`).
//!
//! Token exchange (RFC 8693): `--grant token_exchange --exchange-audience https://orders.example`
//! lets a confidential client exchange access tokens it received for tokens for that target;
//! `--exchange-api-keys` also lets it exchange the API keys its callers present (a resource
//! server only: `--resource-audience`; `trustgate gateway` with `[api_keys]` needs it).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::Failure;
use super::user::segment;
use crate::client::{Client, ClientArgs, print_json};

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client and print it as JSON (with its secret, shown this once).
    Create {
        /// Display name (shown on the consent page).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        settings: ClientSettings,
    },
    /// List clients (ordered by id).
    List {
        /// Start after this client id.
        #[arg(long)]
        after: Option<String>,
        /// Clients per page (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Follow `next` and print every client.
        #[arg(long)]
        all: bool,
    },
    /// Show a client.
    Get(ClientIdArg),
    /// Change a client: only the fields given as flags change.
    Update {
        #[command(flatten)]
        id: ClientIdArg,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        settings: ClientSettings,
    },
    /// Delete a client and everything issued to it.
    Delete(ClientIdArg),
    /// Issue a new client secret (printed once); the old one stops working at once.
    RotateSecret(ClientIdArg),
}

/// Which client a command addresses.
#[derive(Debug, Clone, Args)]
pub struct ClientIdArg {
    /// The client id (tgc_...).
    client_id: String,
}

/// The registration flags shared by `create` and `update`.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientSettings {
    /// Redirect URI (repeat for several).
    #[arg(long = "redirect-uri", value_name = "URI")]
    redirect_uris: Vec<String>,
    /// Post-logout redirect URI (repeat for several).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    post_logout_redirect_uris: Vec<String>,
    /// Grant type: authorization_code, refresh_token, client_credentials, device_code,
    /// token_exchange (repeat for several) [default: authorization_code and refresh_token].
    #[arg(long = "grant", value_name = "GRANT")]
    grants: Vec<String>,
    /// Allowed scope (repeat for several) [default: openid profile email offline_access].
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// A public client (native or browser app): no secret, same as --auth-method none.
    #[arg(long, conflicts_with = "auth_method")]
    public: bool,
    /// client_secret_basic (default), client_secret_post, private_key_jwt, none,
    /// tls_client_auth (with one --tls-client-auth-* name) or self_signed_tls_client_auth (with
    /// a --jwks-file whose keys carry the certificates as x5c).
    #[arg(long, value_name = "METHOD")]
    auth_method: Option<String>,
    /// tls_client_auth: the subject DN (RFC 4514) the client certificate must have.
    #[arg(long, value_name = "DN")]
    tls_client_auth_subject_dn: Option<String>,
    /// tls_client_auth: a DNS name SAN the client certificate must have.
    #[arg(long, value_name = "NAME")]
    tls_client_auth_san_dns: Option<String>,
    /// tls_client_auth: a URI SAN (e.g. a SPIFFE ID) the client certificate must have.
    #[arg(long, value_name = "URI")]
    tls_client_auth_san_uri: Option<String>,
    /// tls_client_auth: an IP address SAN the client certificate must have.
    #[arg(long, value_name = "IP")]
    tls_client_auth_san_ip: Option<String>,
    /// tls_client_auth: an email SAN the client certificate must have.
    #[arg(long, value_name = "EMAIL")]
    tls_client_auth_san_email: Option<String>,
    /// The client's public keys, a JWK Set JSON file (for private_key_jwt, and with x5c for
    /// self_signed_tls_client_auth).
    #[arg(long, value_name = "FILE")]
    jwks_file: Option<PathBuf>,
    /// A native app (private-use scheme and loopback redirect URIs, RFC 8252).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    native: Option<bool>,
    /// Authorization requests must be pushed first (PAR, RFC 9126).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    require_par: Option<bool>,
    /// Every token request must carry a DPoP proof: every access token is DPoP-bound (RFC 9449).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    dpop_bound_access_tokens: Option<bool>,
    /// A first-party application: no consent page.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    skip_consent: Option<bool>,
    /// Access-token lifetime in seconds (60 to 86400) [default: 600].
    #[arg(long, value_name = "SECS")]
    access_token_ttl: Option<u32>,
    /// Absolute refresh-token lifetime in seconds [default: 30 days].
    #[arg(long, value_name = "SECS")]
    refresh_token_ttl: Option<u32>,
    /// Seconds a rotated refresh token is honoured once more, for a client that refreshes
    /// concurrently (0 to 60) [default: oauth.refresh_grace_secs, 0].
    #[arg(long, value_name = "SECS")]
    refresh_grace: Option<u32>,
    /// Audience (resource server) of the client's access tokens (repeat for several).
    #[arg(long = "audience", value_name = "AUD")]
    audiences: Vec<String>,
    /// An audience this client serves as a resource server: it may introspect access tokens
    /// whose `aud` contains it (repeat for several; RFC 7662 §4).
    #[arg(long = "resource-audience", value_name = "AUD")]
    resource_audiences: Vec<String>,
    /// With --grant token_exchange: a target (audience or resource) the client may exchange
    /// tokens for (repeat for several; '' removes the token exchange policy).
    #[arg(long = "exchange-audience", value_name = "AUD")]
    exchange_audiences: Vec<String>,
    /// With --grant token_exchange: the client may also exchange trustgate's API keys (and
    /// personal access tokens) its callers present, as subject tokens.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    exchange_api_keys: Option<bool>,
    /// OIDC back-channel logout URI of the client ('' removes it).
    #[arg(long, value_name = "URI")]
    backchannel_logout_uri: Option<String>,
    /// Back-channel logout tokens must carry the session id (sid).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    backchannel_logout_session_required: Option<bool>,
}

/// The registered spelling of a grant type given on the command line.
fn grant_type(value: &str) -> String {
    match value {
        "device_code" | "device" => "urn:ietf:params:oauth:grant-type:device_code".to_owned(),
        "token_exchange" | "token-exchange" => {
            "urn:ietf:params:oauth:grant-type:token-exchange".to_owned()
        }
        other => other.to_owned(),
    }
}

/// A list flag's values, empty ones dropped (so `--flag ''` means "no entries").
fn list(values: &[String], map: impl Fn(&str) -> String) -> Value {
    Value::from(
        values
            .iter()
            .filter(|v| !v.is_empty())
            .map(|v| map(v))
            .collect::<Vec<_>>(),
    )
}

impl ClientSettings {
    /// Writes the fields given on the command line into a registration object.
    fn apply(&self, reg: &mut Map<String, Value>) -> Result<(), Failure> {
        let same = |v: &str| v.to_owned();
        if !self.redirect_uris.is_empty() {
            reg.insert("redirect_uris".into(), list(&self.redirect_uris, same));
        }
        if !self.post_logout_redirect_uris.is_empty() {
            reg.insert(
                "post_logout_redirect_uris".into(),
                list(&self.post_logout_redirect_uris, same),
            );
        }
        if !self.grants.is_empty() {
            reg.insert("grant_types".into(), list(&self.grants, grant_type));
        }
        if !self.scopes.is_empty() {
            reg.insert("scopes".into(), list(&self.scopes, same));
        }
        if !self.audiences.is_empty() {
            reg.insert("audience".into(), list(&self.audiences, same));
        }
        if !self.resource_audiences.is_empty() {
            reg.insert(
                "resource_audiences".into(),
                list(&self.resource_audiences, same),
            );
        }
        if !self.exchange_audiences.is_empty() {
            let audiences = list(&self.exchange_audiences, same);
            let policy = match (audiences.as_array(), reg.get_mut("token_exchange")) {
                (Some(list), _) if list.is_empty() => Value::Null,
                // Other settings of an existing policy (the API key opt-in) stay as they are.
                (_, Some(Value::Object(existing))) => {
                    existing.insert("audiences".into(), audiences);
                    Value::Object(existing.clone())
                }
                _ => json!({ "audiences": audiences }),
            };
            reg.insert("token_exchange".into(), policy);
        }
        if let Some(api_keys) = self.exchange_api_keys {
            match reg.get_mut("token_exchange") {
                Some(Value::Object(policy)) => {
                    policy.insert("api_keys".into(), Value::Bool(api_keys));
                }
                // Nothing to switch off where nothing is exchanged.
                _ if !api_keys => {}
                _ => {
                    return Err(Failure::Usage(
                        "--exchange-api-keys needs a token exchange policy: give \
                         --exchange-audience too"
                            .into(),
                    ));
                }
            }
        }
        if self.public {
            reg.insert("auth_method".into(), json!("none"));
        } else if let Some(method) = &self.auth_method {
            reg.insert("auth_method".into(), json!(method));
        }
        for (key, value) in [
            (
                "tls_client_auth_subject_dn",
                &self.tls_client_auth_subject_dn,
            ),
            ("tls_client_auth_san_dns", &self.tls_client_auth_san_dns),
            ("tls_client_auth_san_uri", &self.tls_client_auth_san_uri),
            ("tls_client_auth_san_ip", &self.tls_client_auth_san_ip),
            ("tls_client_auth_san_email", &self.tls_client_auth_san_email),
        ] {
            if let Some(value) = value {
                reg.insert(key.into(), json!(value));
            }
        }
        if let Some(path) = &self.jwks_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::Usage(format!("cannot read --jwks-file {}: {e}", path.display()))
            })?;
            let jwks: Value = serde_json::from_str(&text).map_err(|e| {
                Failure::Usage(format!("--jwks-file {} is not JSON: {e}", path.display()))
            })?;
            reg.insert("jwks".into(), jwks);
        }
        if let Some(native) = self.native {
            let kind = if native { "native" } else { "web" };
            reg.insert("application_type".into(), json!(kind));
        }
        for (key, value) in [
            ("require_par", self.require_par),
            ("dpop_bound_access_tokens", self.dpop_bound_access_tokens),
            ("skip_consent", self.skip_consent),
            (
                "backchannel_logout_session_required",
                self.backchannel_logout_session_required,
            ),
        ] {
            if let Some(value) = value {
                reg.insert(key.into(), Value::Bool(value));
            }
        }
        if let Some(secs) = self.access_token_ttl {
            reg.insert("access_token_ttl_secs".into(), json!(secs));
        }
        if let Some(secs) = self.refresh_token_ttl {
            reg.insert("refresh_token_ttl_secs".into(), json!(secs));
        }
        if let Some(secs) = self.refresh_grace {
            reg.insert("refresh_grace_secs".into(), json!(secs));
        }
        if let Some(uri) = &self.backchannel_logout_uri {
            let value = if uri.is_empty() {
                Value::Null
            } else {
                json!(uri)
            };
            reg.insert("backchannel_logout_uri".into(), value);
        }
        Ok(())
    }
}

/// The fields of a shown client that are not part of its registration.
const READ_ONLY: [&str; 4] = ["client_id", "created_at", "updated_at", "has_secret"];

fn client_path(id: &str, suffix: &str) -> String {
    format!("/admin/v1/clients/{}{suffix}", segment(id))
}

/// Runs a `client` command.
pub async fn client(command: ClientCommand, args: &ClientArgs) -> Result<(), Failure> {
    let api = Client::new(args)?;
    match command {
        ClientCommand::Create { name, settings } => {
            let mut reg = Map::new();
            reg.insert("name".into(), json!(name));
            settings.apply(&mut reg)?;
            let created = api
                .call(Method::POST, "/admin/v1/clients", Some(&Value::Object(reg)))
                .await?;
            print_json(&created);
            if created.get("client_secret").is_some() {
                eprintln!("the client secret is shown only now: store it securely");
            }
        }
        ClientCommand::List { after, limit, all } => {
            let mut after = after;
            let mut clients = Vec::new();
            loop {
                let mut path = format!("/admin/v1/clients?limit={limit}");
                if let Some(after) = &after {
                    path.push_str(&format!("&after={}", segment(after)));
                }
                let page = api.call(Method::GET, &path, None).await?;
                if let Some(list) = page.get("clients").and_then(Value::as_array) {
                    clients.extend(list.iter().cloned());
                }
                let next = page.get("next").and_then(Value::as_str).map(str::to_owned);
                if !all {
                    print_json(&json!({ "clients": clients, "next": next }));
                    break;
                }
                match next {
                    Some(next) if Some(&next) != after.as_ref() => after = Some(next),
                    _ => {
                        print_json(&json!({ "clients": clients }));
                        break;
                    }
                }
            }
        }
        ClientCommand::Get(ClientIdArg { client_id }) => {
            let path = client_path(&client_id, "");
            print_json(&api.call(Method::GET, &path, None).await?);
        }
        ClientCommand::Update {
            id: ClientIdArg { client_id },
            name,
            settings,
        } => {
            let path = client_path(&client_id, "");
            let current = api.call(Method::GET, &path, None).await?;
            let Value::Object(mut reg) = current else {
                return Err(Failure::Failed(format!(
                    "unexpected answer for client {client_id}"
                )));
            };
            for field in READ_ONLY {
                reg.remove(field);
            }
            if let Some(name) = name {
                reg.insert("name".into(), json!(name));
            }
            settings.apply(&mut reg)?;
            let updated = api
                .call(Method::PUT, &path, Some(&Value::Object(reg)))
                .await?;
            print_json(&updated);
            if updated.get("client_secret").is_some() {
                eprintln!("a client secret was issued and is shown only now: store it securely");
            }
        }
        ClientCommand::Delete(ClientIdArg { client_id }) => {
            api.call(Method::DELETE, &client_path(&client_id, ""), None)
                .await?;
            eprintln!("deleted client {client_id}");
        }
        ClientCommand::RotateSecret(ClientIdArg { client_id }) => {
            let path = client_path(&client_id, "/secret");
            print_json(&api.call(Method::POST, &path, None).await?);
            eprintln!("the new client secret is shown only now; the old one no longer works");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_fill_only_their_fields() {
        let settings = ClientSettings {
            redirect_uris: vec!["https://a.example/cb".into()],
            grants: vec!["authorization_code".into(), "device_code".into()],
            audiences: vec![String::new()],
            skip_consent: Some(false),
            backchannel_logout_uri: Some(String::new()),
            public: true,
            ..ClientSettings::default()
        };
        let mut reg = Map::new();
        reg.insert("scopes".into(), json!(["kept"]));
        settings.apply(&mut reg).expect("apply");
        assert_eq!(
            Value::Object(reg),
            json!({
                "redirect_uris": ["https://a.example/cb"],
                "grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
                "scopes": ["kept"],
                "audience": [],
                "auth_method": "none",
                "skip_consent": false,
                "backchannel_logout_uri": null,
            })
        );
    }

    #[test]
    fn token_exchange_flags() {
        let settings = ClientSettings {
            grants: vec!["client_credentials".into(), "token_exchange".into()],
            exchange_audiences: vec!["https://orders.example".into(), "tgc_ledger".into()],
            ..ClientSettings::default()
        };
        let mut reg = Map::new();
        settings.apply(&mut reg).expect("apply");
        assert_eq!(
            Value::Object(reg),
            json!({
                "grant_types": [
                    "client_credentials",
                    "urn:ietf:params:oauth:grant-type:token-exchange"
                ],
                "token_exchange": { "audiences": ["https://orders.example", "tgc_ledger"] },
            })
        );
        let removed = ClientSettings {
            exchange_audiences: vec![String::new()],
            ..ClientSettings::default()
        };
        let mut reg = Map::new();
        reg.insert(
            "token_exchange".into(),
            json!({ "audiences": ["https://orders.example"] }),
        );
        removed.apply(&mut reg).expect("apply");
        assert_eq!(Value::Object(reg), json!({ "token_exchange": null }));
    }

    #[test]
    fn the_api_key_opt_in_is_a_switch_of_the_exchange_policy() {
        let create = ClientSettings {
            grants: vec!["token_exchange".into()],
            resource_audiences: vec!["https://gateway.example".into()],
            exchange_audiences: vec!["https://orders.example".into()],
            exchange_api_keys: Some(true),
            ..ClientSettings::default()
        };
        let mut reg = Map::new();
        create.apply(&mut reg).expect("apply");
        assert_eq!(
            reg["token_exchange"],
            json!({ "audiences": ["https://orders.example"], "api_keys": true })
        );
        // An update of the audiences keeps the opt-in; switching it off keeps the audiences.
        let audiences = ClientSettings {
            exchange_audiences: vec!["https://ledger.example".into()],
            ..ClientSettings::default()
        };
        audiences.apply(&mut reg).expect("apply");
        assert_eq!(
            reg["token_exchange"],
            json!({ "audiences": ["https://ledger.example"], "api_keys": true })
        );
        let off = ClientSettings {
            exchange_api_keys: Some(false),
            ..ClientSettings::default()
        };
        off.apply(&mut reg).expect("apply");
        assert_eq!(
            reg["token_exchange"],
            json!({ "audiences": ["https://ledger.example"], "api_keys": false })
        );
        // Without a policy: on is a usage error, off changes nothing.
        let mut none = Map::new();
        let on = ClientSettings {
            exchange_api_keys: Some(true),
            ..ClientSettings::default()
        };
        assert!(matches!(on.apply(&mut none), Err(Failure::Usage(_))));
        off.apply(&mut none).expect("apply");
        assert!(none.is_empty());
        let mut removed = Map::new();
        removed.insert("token_exchange".into(), Value::Null);
        assert!(matches!(on.apply(&mut removed), Err(Failure::Usage(_))));
    }
}
