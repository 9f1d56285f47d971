//! watch and chat: live streams that survive failovers.

use std::io::Write;

use clap::Args;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{Ctx, Output};
use crate::output;

/// The newest message id the user can see, so live views start from "now".
async fn newest_id(client: &chat_client::Client) -> anyhow::Result<u64> {
    Ok(client.inbox().await?.iter().map(|c| c.last_message_id).max().unwrap_or(0))
}

#[derive(Debug, Args)]
pub struct Watch {
    /// Start after this message id (0: replay everything); default: only new messages.
    #[arg(long)]
    pub from: Option<u64>,
}

impl Watch {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let client = ctx.authed()?;
        let after = match self.from {
            Some(id) => id,
            None => newest_id(&client).await?,
        };
        let mut stream = Box::pin(client.subscribe(after)?);
        while let Some(item) = stream.next().await {
            let m = item?;
            match ctx.output {
                Output::Json => println!("{}", serde_json::to_string(&output::MessageJson::from(&m))?),
                Output::Table => println!("{}", output::message_line(&m)),
            }
            std::io::stdout().flush()?;
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct Chat {
    /// The other user.
    pub with: String,
}

impl Chat {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let client = ctx.authed()?;
        let me = ctx.session()?.username;
        let recent = client.read(&self.with, 10, 0, chat_client::ReadConsistency::Linearizable).await?;
        for m in &recent {
            println!("{}", output::message_line(m));
        }
        let after = newest_id(&client).await?;
        let mut incoming = Box::pin(client.subscribe(after)?);
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        println!("-- chatting with {} as {me}; type a message and Enter, Ctrl-D to leave --", self.with);
        loop {
            tokio::select! {
                item = incoming.next() => match item {
                    Some(Ok(m)) if m.from == self.with => {
                        println!("{}", output::message_line(&m));
                        client.mark_read(&self.with, m.id).await?;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => return Ok(()),
                },
                line = lines.next_line() => match line? {
                    None => return Ok(()),
                    Some(text) if text.trim().is_empty() => {}
                    Some(text) => {
                        let sent = client.send(&self.with, &text).await?;
                        println!("#{:<8}  {}  {me} → {}  {text}", sent.id, output::timestamp(sent.sent_at_ms), self.with);
                    }
                },
            }
        }
    }
}
