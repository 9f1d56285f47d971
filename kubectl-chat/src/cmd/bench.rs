//! bench: SendMessage throughput and latency against the connected cluster.

use clap::Args;

use crate::cli::{Ctx, Output};

#[derive(Debug, Args)]
pub struct Bench {
    /// Concurrency levels to run, one after another.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub clients: Vec<usize>,
    /// Messages per concurrency level.
    #[arg(long, default_value_t = 2000)]
    pub messages: usize,
    /// Body size in bytes.
    #[arg(long, default_value_t = 200)]
    pub body_bytes: usize,
}

impl Bench {
    /// Creates two throwaway users (bench-<random>), then drives the load from one to the other.
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        if self.body_bytes == 0 || self.body_bytes > 4096 {
            anyhow::bail!("--body-bytes must be 1..=4096");
        }
        let tag = uuid_tag();
        let (from, to, password) =
            (format!("bench-{tag}-a"), format!("bench-{tag}-b"), format!("bench-{tag}-password"));
        ctx.client.register(&from, &password).await?;
        ctx.client.register(&to, &password).await?;
        let token = ctx.client.login(&from, &password).await?;
        let seeds = ctx.client.discovery().seeds().to_vec();
        let body = "x".repeat(self.body_bytes);
        let mut rows = Vec::new();
        if ctx.output == Output::Table {
            println!(
                "SendMessage, {}-byte bodies, {} messages per level, users {from} → {to}",
                self.body_bytes, self.messages
            );
            println!("{:>8} {:>10} {:>10} {:>10} {:>10}", "CLIENTS", "MSGS/S", "P50", "P99", "P999");
        }
        for &clients in &self.clients {
            let r =
                chat_client::load::send_load(&seeds, ctx.client.security(), &token, &to, &body, clients, self.messages)
                    .await?;
            match ctx.output {
                Output::Table => println!(
                    "{:>8} {:>10.0} {:>10.2?} {:>10.2?} {:>10.2?}",
                    r.clients,
                    r.per_second(),
                    r.p50,
                    r.p99,
                    r.p999
                ),
                Output::Json => rows.push(serde_json::json!({
                    "clients": r.clients, "messages": r.messages, "per_second": r.per_second(),
                    "p50_ms": r.p50.as_secs_f64() * 1e3, "p99_ms": r.p99.as_secs_f64() * 1e3, "p999_ms": r.p999.as_secs_f64() * 1e3,
                })),
            }
        }
        if ctx.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        Ok(())
    }
}

fn uuid_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}
