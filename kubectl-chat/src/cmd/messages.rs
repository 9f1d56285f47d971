//! send, read, inbox, mark-read, delete-messages.

use anyhow::{Context, bail};
use chat_client::ReadConsistency;
use clap::Args;

use crate::cli::{Ctx, Output};
use crate::output;

#[derive(Debug, Args)]
pub struct Send {
    /// Recipient.
    pub to: String,
    /// The message; several words are joined with spaces.
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
}

impl Send {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let sent = ctx.authed()?.send(&self.to, &self.text.join(" ")).await?;
        match ctx.output {
            Output::Json => {
                println!("{}", serde_json::json!({ "id": sent.id, "sent_at": output::timestamp(sent.sent_at_ms) }))
            }
            Output::Table => println!("sent #{} to {}", sent.id, self.to),
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct Read {
    /// The other user; default: your most recent conversation.
    pub with: Option<String>,
    /// At most this many messages (the newest).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Only messages older than this id (for paging back).
    #[arg(long)]
    pub before: Option<u64>,
    #[command(flatten)]
    pub level: ReadLevel,
}

/// How fresh a read must be.
#[derive(Debug, Args)]
pub struct ReadLevel {
    /// `session` (default): at least everything this session has written or
    /// read, served by any member without a leader round trip;
    /// `linearizable`: everything acknowledged before the read; `stale`:
    /// whatever the member has (bounded by --max-staleness).
    #[arg(long, value_enum, default_value = "session")]
    pub consistency: Consistency,
    /// Shorthand for `--consistency stale`.
    #[arg(long, conflicts_with = "consistency")]
    pub stale: bool,
    /// With stale reads: refuse a member that has not heard from a leader
    /// within this long (e.g. `2s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_staleness: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Consistency {
    Session,
    Linearizable,
    Stale,
}

impl ReadLevel {
    /// The level, and the client to read with (carrying the staleness bound).
    fn apply(&self, client: chat_client::Client) -> anyhow::Result<(ReadConsistency, chat_client::Client)> {
        let level = if self.stale { Consistency::Stale } else { self.consistency };
        if self.max_staleness.is_some() && level != Consistency::Stale {
            bail!("--max-staleness bounds stale reads only: add --consistency stale");
        }
        let consistency = match level {
            Consistency::Session => ReadConsistency::Session,
            Consistency::Linearizable => ReadConsistency::Linearizable,
            Consistency::Stale => ReadConsistency::Stale,
        };
        Ok((consistency, client.with_max_staleness(self.max_staleness)))
    }
}

impl Read {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let (consistency, client) = self.level.apply(ctx.authed()?)?;
        let with = match self.with {
            Some(w) => w,
            None => {
                let inbox = client.inbox_at(consistency).await?;
                inbox.into_iter().next().map(|c| c.partner).context("no conversations yet")?
            }
        };
        let messages = client.read(&with, self.limit, self.before.unwrap_or(0), consistency).await?;
        match ctx.output {
            Output::Json => println!("{}", output::messages_json(&messages)),
            Output::Table if messages.is_empty() => println!("no messages with {with}"),
            Output::Table => messages.iter().for_each(|m| println!("{}", output::message_line(m))),
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct Inbox {
    #[command(flatten)]
    pub level: ReadLevel,
}

impl Inbox {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let (consistency, client) = self.level.apply(ctx.authed()?)?;
        let conversations = client.inbox_at(consistency).await?;
        match ctx.output {
            Output::Json => {
                let items: Vec<_> = conversations
                    .iter()
                    .map(|c| serde_json::json!({ "partner": c.partner, "unread": c.unread, "last_message_id": c.last_message_id }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
            }
            Output::Table => {
                println!("{:<34} {:>7} {:>10}", "WITH", "UNREAD", "LAST-ID");
                for c in conversations {
                    println!("{:<34} {:>7} {:>10}", output::printable(&c.partner), c.unread, c.last_message_id);
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct MarkRead {
    /// The other user; default: every conversation with unread messages.
    pub with: Option<String>,
    /// Mark up to and including this message id; default: everything.
    #[arg(long)]
    pub up_to: Option<u64>,
}

impl MarkRead {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let client = ctx.authed()?;
        let partners = match self.with {
            Some(w) => vec![w],
            None => client.inbox().await?.into_iter().filter(|c| c.unread > 0).map(|c| c.partner).collect(),
        };
        let mut total = 0;
        for partner in &partners {
            total += client.mark_read(partner, self.up_to.unwrap_or(0)).await?;
        }
        match ctx.output {
            Output::Json => println!("{}", serde_json::json!({ "marked": total })),
            Output::Table => println!("marked {total} message(s) read"),
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct DeleteMessages {
    /// Message ids.
    #[arg(required = true, num_args = 1..)]
    pub ids: Vec<u64>,
}

impl DeleteMessages {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        if self.ids.contains(&0) {
            bail!("message ids start at 1");
        }
        let deleted = ctx.authed()?.delete_messages(&self.ids).await?;
        match ctx.output {
            Output::Json => println!("{}", serde_json::json!({ "deleted": deleted })),
            Output::Table => println!("deleted {deleted} message(s)"),
        }
        Ok(())
    }
}
