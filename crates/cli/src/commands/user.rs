//! Human accounts and the audit trail: clients of `/admin/v1/users` and `/admin/v1/audit`.
//!
//! Passwords are never command-line arguments (they would show up in `ps` and shell history):
//! `--password-stdin` reads the first line of standard input.

use std::io::BufRead as _;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::Failure;
use crate::client::{Client, ClientArgs, print_json};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and print it as JSON.
    Create {
        /// Login name (letters, digits, '.', '_', '-').
        #[arg(long)]
        username: String,
        /// Email address.
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// BCP 47 locale, e.g. en or pt-BR.
        #[arg(long)]
        locale: Option<String>,
        /// Read an initial password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users (ordered by id).
    List {
        /// Start after this user id.
        #[arg(long)]
        after: Option<String>,
        /// Users per page (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Follow `next` and print every user.
        #[arg(long)]
        all: bool,
    },
    /// Show a user (by id, username or email).
    Get(UserArg),
    /// Disable a user: they cannot log in, and their sessions end at once.
    Disable(UserArg),
    /// Enable a disabled user.
    Enable(UserArg),
    /// Delete a user with their sessions and second factors.
    Delete(UserArg),
    /// Set a user's password (read from standard input) and end their sessions.
    SetPassword {
        #[command(flatten)]
        user: UserArg,
        /// Read the password from the first line of standard input (required).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List a user's live sessions.
    Sessions(UserArg),
    /// End a user's sessions (all, or one with --session).
    RevokeSessions {
        #[command(flatten)]
        user: UserArg,
        /// Only this session (its public id, from `user sessions`).
        #[arg(long)]
        session: Option<String>,
    },
}

/// Which user a command addresses.
#[derive(Debug, Clone, Args)]
pub struct UserArg {
    /// User id, username or email.
    user: String,
}

/// Percent-encodes one path segment.
pub(super) fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn user_path(user: &str, suffix: &str) -> String {
    format!("/admin/v1/users/{}{suffix}", segment(user))
}

/// The first line of standard input, without its line ending.
fn password_from_stdin() -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::Failed(format!("reading the password from standard input: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(Failure::Usage(
            "no password on standard input (expected one line)".into(),
        ));
    }
    Ok(password)
}

/// Runs a `user` command.
pub async fn user(command: UserCommand, args: &ClientArgs) -> Result<(), Failure> {
    let client = Client::new(args)?;
    match command {
        UserCommand::Create {
            username,
            email,
            name,
            locale,
            password_stdin,
        } => {
            let mut body = Map::new();
            body.insert("username".into(), Value::from(username));
            body.insert("email".into(), Value::from(email));
            if let Some(name) = name {
                body.insert("name".into(), Value::from(name));
            }
            if let Some(locale) = locale {
                body.insert("locale".into(), Value::from(locale));
            }
            if password_stdin {
                body.insert("password".into(), Value::from(password_from_stdin()?));
            }
            let created = client
                .call(Method::POST, "/admin/v1/users", Some(&Value::Object(body)))
                .await?;
            print_json(&created);
        }
        UserCommand::List { after, limit, all } => {
            let mut after = after;
            let mut users = Vec::new();
            loop {
                let mut path = format!("/admin/v1/users?limit={limit}");
                if let Some(after) = &after {
                    path.push_str(&format!("&after={}", segment(after)));
                }
                let page = client.call(Method::GET, &path, None).await?;
                if let Some(list) = page.get("users").and_then(Value::as_array) {
                    users.extend(list.iter().cloned());
                }
                let next = page.get("next").and_then(Value::as_str).map(str::to_owned);
                if !all {
                    print_json(&json!({ "users": users, "next": next }));
                    break;
                }
                match next {
                    Some(next) if Some(&next) != after.as_ref() => after = Some(next),
                    _ => {
                        print_json(&json!({ "users": users }));
                        break;
                    }
                }
            }
        }
        UserCommand::Get(UserArg { user }) => {
            print_json(
                &client
                    .call(Method::GET, &user_path(&user, ""), None)
                    .await?,
            );
        }
        UserCommand::Disable(UserArg { user }) => {
            let path = user_path(&user, "/disable");
            print_json(&client.call(Method::POST, &path, None).await?);
        }
        UserCommand::Enable(UserArg { user }) => {
            let path = user_path(&user, "/enable");
            print_json(&client.call(Method::POST, &path, None).await?);
        }
        UserCommand::Delete(UserArg { user }) => {
            client
                .call(Method::DELETE, &user_path(&user, ""), None)
                .await?;
            eprintln!("deleted user {user}");
        }
        UserCommand::SetPassword {
            user: UserArg { user },
            password_stdin,
        } => {
            if !password_stdin {
                return Err(Failure::Usage(
                    "pass the password on standard input with --password-stdin (never as an argument)"
                        .into(),
                ));
            }
            let body = json!({ "password": password_from_stdin()? });
            client
                .call(Method::POST, &user_path(&user, "/password"), Some(&body))
                .await?;
            eprintln!("password set for {user}; their sessions were ended");
        }
        UserCommand::Sessions(UserArg { user }) => {
            let path = user_path(&user, "/sessions");
            print_json(&client.call(Method::GET, &path, None).await?);
        }
        UserCommand::RevokeSessions {
            user: UserArg { user },
            session,
        } => {
            let body = match session {
                Some(id) => json!({ "session_id": id }),
                None => json!({}),
            };
            let path = user_path(&user, "/sessions/revoke");
            print_json(&client.call(Method::POST, &path, Some(&body)).await?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("alice"), "alice");
        assert_eq!(segment("a@b.c"), "a%40b.c");
        assert_eq!(segment("../x"), "..%2Fx");
        assert_eq!(segment("a b?c#d"), "a%20b%3Fc%23d");
        assert_eq!(segment("ü"), "%C3%BC");
    }
}
