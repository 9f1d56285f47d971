//! status: every member's view, the leader marked; in kube mode also the
//! ReplicatedChat's conditions, recent Events and each pod's volume.

use chat_k8s::view::{KubeView, Volumes};
use clap::Args;

use crate::cli::{Ctx, Output};
use crate::cmd::kube_view;
use crate::output;

#[derive(Debug, Args)]
pub struct Status {}

impl Status {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let status = ctx.client.cluster_status().await?;
        // Kube mode: the ReplicatedChat's conditions, recent Events, volumes.
        let kube = match &ctx.kube {
            Some(kube) => Some(KubeView::read(&kube.kube, &kube.names, Volumes::Include).await),
            None => None,
        };
        match ctx.output {
            Output::Json => {
                let mut value: serde_json::Value = serde_json::from_str(&output::status_json(&status))?;
                if let Some(kube) = &kube {
                    value["kubernetes"] = serde_json::to_value(kube)?;
                }
                println!("{value}");
            }
            Output::Table => {
                print!("{}", output::status_table(&status));
                if let Some(kube) = &kube {
                    println!("{}", kube_view::table(kube));
                }
            }
        }
        Ok(())
    }
}
