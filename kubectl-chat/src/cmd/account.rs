//! register, login, logout, whoami, delete-account, users.

use std::io::Write;

use anyhow::bail;
use clap::Args;

use crate::cli::{Ctx, Output};
use crate::password;
use crate::session::Session;

#[derive(Debug, Args)]
pub struct Register {
    pub username: String,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
}

impl Register {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let password = password::read(self.password_stdin, &format!("password for new user {}: ", self.username))?;
        ctx.client.register(&self.username, &password).await?;
        println!("registered {}", self.username);
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct Login {
    pub username: String,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
}

impl Login {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let password = password::read(self.password_stdin, &format!("password for {}: ", self.username))?;
        let token = ctx.client.login(&self.username, &password).await?;
        let index = ctx.client.seen_index();
        ctx.store.put(&ctx.cluster_key, Session { username: self.username.clone(), token, index })?;
        println!("logged in as {}", self.username);
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct Logout {}

impl Logout {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let session = ctx.session()?;
        // Forget the session locally even if the cluster already ended it.
        let result = ctx.authed()?.logout().await;
        ctx.store.remove(&ctx.cluster_key)?;
        match result {
            Err(e) if e.code() == Some(tonic::Code::Unauthenticated) => {}
            other => other?,
        }
        println!("logged out {}", session.username);
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct Whoami {}

impl Whoami {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let session = ctx.session()?;
        match ctx.output {
            Output::Json => println!("{}", serde_json::json!({ "username": session.username })),
            Output::Table => println!("{}", session.username),
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct DeleteAccount {
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

impl DeleteAccount {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let session = ctx.session()?;
        if !self.yes {
            print!("delete account {} and all its messages? type the username to confirm: ", session.username);
            std::io::stdout().flush()?;
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if answer.trim() != session.username {
                bail!("not confirmed; nothing deleted");
            }
        }
        let deleted = ctx.authed()?.delete_account().await?;
        ctx.store.remove(&ctx.cluster_key)?;
        println!("deleted account {} and {deleted} message(s)", session.username);
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct Users {
    /// Glob pattern (`*`, `?`, `[a-z]`); default: everyone.
    pub pattern: Option<String>,
}

impl Users {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let client = ctx.authed()?;
        let pattern = self.pattern.unwrap_or_default();
        let mut all = Vec::new();
        let mut page = String::new();
        loop {
            let (names, next) = client.users(&pattern, 1000, &page).await?;
            all.extend(names);
            if next.is_empty() {
                break;
            }
            page = next;
        }
        match ctx.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&all)?),
            Output::Table => all.iter().for_each(|u| println!("{u}")),
        }
        Ok(())
    }
}
