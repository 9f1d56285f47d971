//! status: every member's view, the leader marked.

use clap::Args;

use crate::cli::{Ctx, Output};
use crate::output;

#[derive(Debug, Args)]
pub struct Status {}

impl Status {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let status = ctx.client.cluster_status().await?;
        match ctx.output {
            Output::Json => println!("{}", output::status_json(&status)),
            Output::Table => print!("{}", output::status_table(&status)),
        }
        Ok(())
    }
}
