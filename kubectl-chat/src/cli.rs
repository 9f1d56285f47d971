//! Global flags, the subcommand list, and the connection they share.

use anyhow::Context;
use chat_client::Client;

use clap::{Parser, Subcommand, ValueEnum};

use crate::cmd;
use crate::connect::{Connection, Target};
use crate::session::{Session, SessionStore};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-chat",
    bin_name = "kubectl chat",
    args_override_self = true,
    version,
    about = "Chat on a replicated-chat cluster, directly (--addr) or through Kubernetes",
    after_help = "Examples:\n  kubectl chat --addr 127.0.0.1:50051 register alice\n  kubectl chat login alice\n  kubectl chat send bob hello there\n  kubectl chat read bob\n  kubectl chat status -o json"
)]
pub struct Cli {
    /// Cluster members to connect to directly (host:port, comma-separated).
    #[arg(long, env = "CHAT_ADDR", value_delimiter = ',', global = true)]
    pub addr: Vec<String>,
    /// Path to the kubeconfig file (kube mode; default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context to use (kube mode).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace of the ReplicatedChat (kube mode).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Name of the ReplicatedChat (kube mode; default: the only one in the namespace).
    #[arg(long, global = true)]
    pub cluster: Option<String>,
    /// CA certificate (PEM) to verify the cluster's members against.
    /// `chat-node dev` prints where its CA is.
    #[arg(long, env = "CHAT_CA", global = true)]
    pub ca: Option<std::path::PathBuf>,
    /// Talk to a cluster that serves its public port without TLS
    /// (`chat-node --public-plaintext`): passwords and tokens cross the network in clear.
    #[arg(long, env = "CHAT_PLAINTEXT", global = true, conflicts_with = "ca")]
    pub plaintext: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
    pub output: Output,
    /// Overall time budget per call, retries through failovers included (seconds).
    #[arg(long, default_value_t = 15, global = true)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Chat(ChatCommand),
    #[command(flatten)]
    Admin(cmd::admin::AdminCommand),
}

/// What talks to the chat cluster (directly or through a port-forward).
#[derive(Debug, Subcommand)]
pub enum ChatCommand {
    /// Create an account (password from a prompt, --password-stdin or CHAT_PASSWORD).
    Register(cmd::account::Register),
    /// Log in and remember the session for this cluster.
    Login(cmd::account::Login),
    /// End the session.
    Logout(cmd::account::Logout),
    /// Show who the saved session belongs to.
    Whoami(cmd::account::Whoami),
    /// Delete your account and every message you sent or received.
    DeleteAccount(cmd::account::DeleteAccount),
    /// List users, optionally matching a glob pattern.
    Users(cmd::account::Users),
    /// Send a message.
    Send(cmd::messages::Send),
    /// Read a conversation.
    Read(cmd::messages::Read),
    /// Conversations with unread counts.
    Inbox(cmd::messages::Inbox),
    /// Mark messages as read.
    MarkRead(cmd::messages::MarkRead),
    /// Delete messages you sent or received.
    DeleteMessages(cmd::messages::DeleteMessages),
    /// Stream incoming messages as they arrive.
    Watch(cmd::live::Watch),
    /// Interactive chat with one user: live incoming messages and a prompt.
    Chat(cmd::live::Chat),
    /// Members of the cluster: roles, terms, indexes, lag.
    Status(cmd::status::Status),
    /// Load test: SendMessage throughput and latency at several concurrency levels.
    Bench(cmd::bench::Bench),
    /// Serve the web console for this cluster (the cluster, live) and print its URL.
    Console(cmd::console::Console),
}

/// What every subcommand gets: a connected client, where sessions live, output format.
pub struct Ctx {
    pub client: Client,
    /// The Kubernetes side, in kube mode.
    pub kube: Option<crate::connect::KubeCluster>,
    pub store: SessionStore,
    pub cluster_key: String,
    pub output: Output,
}

impl Ctx {
    /// The saved session for this cluster.
    ///
    /// # Errors
    /// When nobody is logged in to this cluster.
    pub fn session(&self) -> anyhow::Result<Session> {
        self.store.get(&self.cluster_key)?.context("not logged in to this cluster: run `kubectl chat login USER`")
    }

    /// The client acting for the saved session.
    ///
    /// # Errors
    /// As [`Ctx::session`].
    pub fn authed(&self) -> anyhow::Result<Client> {
        let session = self.session()?;
        self.client.observe_index(session.index);
        Ok(self.client.clone().with_token(session.token))
    }
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        let target = Target {
            addrs: &self.addr,
            ca: self.ca.as_deref(),
            plaintext: self.plaintext,
            kubeconfig: self.kubeconfig.as_deref(),
            context: self.context.as_deref(),
            namespace: self.namespace.as_deref(),
            cluster: self.cluster.as_deref(),
        };
        let deadline = std::time::Duration::from_secs(self.timeout);
        let command = match self.command {
            Command::Admin(admin) => return admin.run(&target, self.output, deadline).await,
            Command::Chat(command) => command,
        };
        let Connection { client, cluster_key, kube } = Connection::open(&target, deadline).await?;
        let ctx = Ctx { client, kube, store: SessionStore::default_location()?, cluster_key, output: self.output };
        let outcome = match command {
            ChatCommand::Register(c) => c.run(&ctx).await,
            ChatCommand::Login(c) => c.run(&ctx).await,
            ChatCommand::Logout(c) => c.run(&ctx).await,
            ChatCommand::Whoami(c) => c.run(&ctx).await,
            ChatCommand::DeleteAccount(c) => c.run(&ctx).await,
            ChatCommand::Users(c) => c.run(&ctx).await,
            ChatCommand::Send(c) => c.run(&ctx).await,
            ChatCommand::Read(c) => c.run(&ctx).await,
            ChatCommand::Inbox(c) => c.run(&ctx).await,
            ChatCommand::MarkRead(c) => c.run(&ctx).await,
            ChatCommand::DeleteMessages(c) => c.run(&ctx).await,
            ChatCommand::Watch(c) => c.run(&ctx).await,
            ChatCommand::Chat(c) => c.run(&ctx).await,
            ChatCommand::Status(c) => c.run(&ctx).await,
            ChatCommand::Bench(c) => c.run(&ctx).await,
            ChatCommand::Console(c) => c.run(&ctx).await,
        };
        // The session's position moves with what this command saw (clones of
        // the client share it), for the next command's SESSION reads.
        let seen = ctx.client.seen_index();
        if seen > 0 && outcome.is_ok() {
            ctx.store.advance(&ctx.cluster_key, seen)?;
        }
        outcome
    }
}
