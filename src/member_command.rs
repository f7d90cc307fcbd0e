//! `keel member list|add|remove|promote|update`: membership through the etcd API of any
//! member, as `etcdctl member ...` does, for users without etcdctl.

use etcd_client::{Client, MemberAddOptions};

#[derive(Debug, clap::Args)]
pub struct MemberArgs {
    /// Client URLs of running members, comma separated.
    #[arg(long, global = true, default_value = "127.0.0.1:2379")]
    endpoints: String,
    #[command(subcommand)]
    command: MemberCommand,
}

#[derive(Debug, clap::Subcommand)]
enum MemberCommand {
    List,
    /// Adds a member by its peer URLs; start it with `--initial-cluster-state existing`.
    Add {
        name: String,
        #[arg(long)]
        peer_urls: String,
        #[arg(long)]
        learner: bool,
    },
    /// Removes a member by its hex id.
    Remove {
        id: String,
    },
    /// Promotes a learner that has caught up.
    Promote {
        id: String,
    },
    /// Changes a member's peer URLs.
    Update {
        id: String,
        #[arg(long)]
        peer_urls: String,
    },
}

fn member_id(text: &str) -> Result<u64, String> {
    u64::from_str_radix(text, 16).map_err(|error| format!("{text:?} is not a hex member id: {error}"))
}

fn urls(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|url| !url.is_empty()).map(str::to_string).collect()
}

pub fn run(args: MemberArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let endpoints = urls(&args.endpoints);
        let mut client = Client::connect(&endpoints, None).await.map_err(|error| format!("connect: {error}"))?;
        let failed = |error: etcd_client::Error| format!("keel member: {error}");
        match args.command {
            MemberCommand::List => {
                for member in client.member_list().await.map_err(failed)?.members() {
                    let state = if member.name().is_empty() { "unstarted" } else { "started" };
                    println!(
                        "{:x}, {state}, {}, {}, {}, {}",
                        member.id(),
                        member.name(),
                        member.peer_urls().join(","),
                        member.client_urls().join(","),
                        member.is_learner()
                    );
                }
            }
            MemberCommand::Add { name, peer_urls, learner } => {
                let options = if learner { MemberAddOptions::new().with_is_learner() } else { MemberAddOptions::new() };
                let peer_urls = urls(&peer_urls);
                let added = client.member_add(peer_urls.clone(), Some(options)).await.map_err(failed)?;
                let id = added.member().map_or(0, |member| member.id());
                println!("Member {id:x} added; start it with:");
                let mut cluster: Vec<String> = Vec::new();
                for member in added.member_list() {
                    let member_name = if member.id() == id { name.as_str() } else { member.name() };
                    for url in member.peer_urls() {
                        cluster.push(format!("{member_name}={url}"));
                    }
                }
                println!(
                    "  keel store --name {name} --initial-advertise-peer-urls {} --initial-cluster {} --initial-cluster-state existing",
                    peer_urls.join(","),
                    cluster.join(",")
                );
            }
            MemberCommand::Remove { id } => {
                let id = member_id(&id)?;
                client.member_remove(id).await.map_err(failed)?;
                println!("Member {id:x} removed");
            }
            MemberCommand::Promote { id } => {
                let id = member_id(&id)?;
                client.member_promote(id).await.map_err(failed)?;
                println!("Member {id:x} promoted");
            }
            MemberCommand::Update { id, peer_urls } => {
                let id = member_id(&id)?;
                client.member_update(id, urls(&peer_urls)).await.map_err(failed)?;
                println!("Member {id:x} updated");
            }
        }
        Ok(())
    })
}
