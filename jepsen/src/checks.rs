//! Checks on the cluster itself, after everything healed: the members converge (same revision,
//! same HashKV at it, all in the membership), and no member crashed or logged a panic except
//! where a failpoint was armed on purpose.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::cluster::{Cluster, LOG_HEADER};
use crate::report::Verdict;

pub async fn convergence(cluster: &Mutex<Cluster>) -> Verdict {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        let cluster = cluster.lock().await;
        let size = cluster.len();
        let mut revisions = Vec::new();
        for index in 0..size {
            match cluster.status(index).await {
                Ok((_, _, revision)) => revisions.push(revision),
                Err(error) => last = format!("n{}: {error}", index + 1),
            }
        }
        if revisions.len() == size && revisions.iter().all(|revision| *revision == revisions[0]) {
            let revision = revisions[0];
            let mut hashes = Vec::new();
            for index in 0..size {
                let hash = match cluster.admin_client(index).await {
                    Ok(mut client) => tokio::time::timeout(Duration::from_secs(10), client.hash_kv(revision))
                        .await
                        .map_err(|_| "timed out".to_string())
                        .and_then(|answer| answer.map_err(|error| error.to_string())),
                    Err(error) => Err(error),
                };
                match hash {
                    Ok(answer) => hashes.push(answer.hash()),
                    Err(error) => last = format!("n{} HashKV: {error}", index + 1),
                }
            }
            if hashes.len() == size {
                let members = match cluster.admin_client(0).await {
                    Ok(mut client) => client.member_list().await.map(|list| list.members().len()).unwrap_or(0),
                    Err(_) => 0,
                };
                if hashes.iter().any(|hash| *hash != hashes[0]) {
                    let listed: Vec<String> = hashes.iter().map(|hash| format!("{hash:#010x}")).collect();
                    return Verdict::fail(
                        "convergence",
                        format!("same revision {revision}, different HashKV: {}", listed.join(" ")),
                    );
                }
                if members != size {
                    return Verdict::fail("convergence", format!("the membership lists {members} members, not {size}"));
                }
                return Verdict::ok(
                    "convergence",
                    format!(
                        "{size} members at revision {revision} with HashKV {:#010x}, all in the membership",
                        hashes[0]
                    ),
                );
            }
        } else if revisions.len() == size {
            last = format!("revisions {revisions:?}");
        }
        drop(cluster);
        if Instant::now() > deadline {
            return Verdict::fail("convergence", format!("members did not converge within 60 s: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Panics in member logs (outside incarnations started with failpoints) and exits nobody caused.
pub fn crashes(cluster: &mut Cluster) -> Verdict {
    let mut problems = Vec::new();
    let mut excused = 0;
    for index in 0..cluster.len() {
        cluster.poll_exit(index);
        let node = &cluster.nodes[index];
        for exit in &node.unexpected_exits {
            problems.push(format!("{} {exit}", node.name));
        }
        let log = std::fs::read_to_string(&node.log).unwrap_or_default();
        for section in log.split(LOG_HEADER).skip(1) {
            let armed = section.lines().next().is_some_and(|header| header.contains("FAILPOINTS="));
            let panic = section.lines().find(|line| {
                line.contains("panicked at") || line.starts_with("panic:") || line.starts_with("fatal error:")
            });
            match (panic, armed) {
                (Some(_), true) => excused += 1,
                (Some(line), false) => {
                    let header = section.lines().next().unwrap_or_default().trim();
                    problems.push(format!("{} ({header}): {}", node.name, line.trim()));
                }
                (None, _) => {}
            }
        }
    }
    if problems.is_empty() {
        Verdict::ok(
            "no-crash",
            format!("no panic or unexpected exit in any member log ({excused} intended failpoint crashes)"),
        )
    } else {
        Verdict::fail("no-crash", problems.join("; "))
    }
}
