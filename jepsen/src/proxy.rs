//! The userspace fallback network: one TCP proxy per member in front of its peer port.
//!
//! Every member advertises its proxy as its peer URL, so all peer traffic passes through the
//! runner. A proxy learns which member opened a connection from /proc: the connecting socket's
//! inode (from /proc/net/tcp) is among the open files of exactly one member process. Each byte
//! stream direction is then a directed link `(from, to)`: while it is blocked its data is held
//! (a dropped packet is retransmitted until the link heals, so holding is what TCP would see);
//! otherwise each chunk waits for the link's delay (with 20% jitter), and with the loss
//! probability an extra 200 ms, roughly a retransmission timeout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cluster::NodeAddrs;
use crate::net::Links;

/// What the proxies do to each link.
#[derive(Clone, Debug)]
pub struct Rules {
    pub blocked: Links,
    /// Per sending member.
    pub delay: Vec<Duration>,
    pub loss: Vec<f64>,
}

impl Rules {
    /// Whether data from `from` to `to` is held; an unattributed end counts as any member.
    fn blocked(&self, from: Option<usize>, to: Option<usize>) -> bool {
        match (from, to) {
            (Some(from), Some(to)) => self.blocked.contains(&(from, to)),
            (None, Some(to)) => self.blocked.iter().any(|link| link.1 == to),
            (Some(from), None) => self.blocked.iter().any(|link| link.0 == from),
            (None, None) => false,
        }
    }
}

#[derive(Debug)]
struct Shared {
    pids: Mutex<Vec<Option<u32>>>,
    rules: watch::Sender<Rules>,
    /// Connections accepted, and those whose opener was not found (treated as any member).
    connections: AtomicU64,
    unattributed: AtomicU64,
}

#[derive(Debug)]
pub struct Proxies {
    shared: Arc<Shared>,
    addrs: Vec<NodeAddrs>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Proxies {
    pub async fn start(size: usize) -> Result<Proxies, String> {
        let rules = Rules { blocked: Links::new(), delay: vec![Duration::ZERO; size], loss: vec![0.0; size] };
        let shared = Arc::new(Shared {
            pids: Mutex::new(vec![None; size]),
            rules: watch::Sender::new(rules),
            connections: AtomicU64::new(0),
            unattributed: AtomicU64::new(0),
        });
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for index in 0..size {
            let client_port = jepsen::ports::claim()?;
            let peer_port = jepsen::ports::claim()?;
            let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|error| error.to_string())?;
            let proxy_port = listener.local_addr().map_err(|error| error.to_string())?.port();
            addrs.push(NodeAddrs {
                client_listen: format!("http://127.0.0.1:{client_port}"),
                client_url: format!("http://127.0.0.1:{client_port}"),
                peer_listen: format!("http://127.0.0.1:{peer_port}"),
                peer_url: format!("http://127.0.0.1:{proxy_port}"),
                netns: None,
            });
            tasks.push(tokio::spawn(accept_loop(shared.clone(), index, listener, peer_port)));
        }
        Ok(Proxies { shared, addrs, tasks })
    }

    pub fn addrs(&self, index: usize) -> NodeAddrs {
        self.addrs[index].clone()
    }

    pub fn set_pid(&self, index: usize, pid: Option<u32>) {
        self.shared.pids.lock().unwrap()[index] = pid;
    }

    /// Peer connections proxied so far, and how many of them could not be attributed.
    pub fn stats(&self) -> (u64, u64) {
        (self.shared.connections.load(Ordering::Relaxed), self.shared.unattributed.load(Ordering::Relaxed))
    }

    pub fn update(&self, change: impl FnOnce(&mut Rules)) {
        self.shared.rules.send_modify(change);
    }
}

async fn accept_loop(shared: Arc<Shared>, index: usize, listener: TcpListener, upstream_port: u16) {
    let proxy_addr = listener.local_addr().expect("a bound listener");
    loop {
        let Ok((socket, peer)) = listener.accept().await else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let source = identify(&shared, peer, proxy_addr).await;
            shared.connections.fetch_add(1, Ordering::Relaxed);
            if source.is_none() {
                shared.unattributed.fetch_add(1, Ordering::Relaxed);
            }
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)).await else { return };
            let _ = socket.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (client_read, client_write) = socket.into_split();
            let (upstream_read, upstream_write) = upstream.into_split();
            let rules = shared.rules.subscribe();
            tokio::spawn(pump(client_read, upstream_write, source, Some(index), rules.clone()));
            tokio::spawn(pump(upstream_read, client_write, Some(index), source, rules));
        });
    }
}

/// Forwards one direction of a connection, link rules applied.
async fn pump(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    from: Option<usize>,
    to: Option<usize>,
    mut rules: watch::Receiver<Rules>,
) {
    let (sender, mut receiver) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let reading = tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sender.send((Instant::now(), buffer[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    'chunks: while let Some((read_at, data)) = receiver.recv().await {
        loop {
            let (blocked, delay, loss) = {
                let rules = rules.borrow_and_update();
                let sender = from.unwrap_or(usize::MAX);
                (
                    rules.blocked(from, to),
                    rules.delay.get(sender).copied().unwrap_or_default(),
                    rules.loss.get(sender).copied().unwrap_or_default(),
                )
            };
            if blocked {
                if rules.changed().await.is_err() {
                    break 'chunks;
                }
                continue;
            }
            let mut due = read_at;
            if !delay.is_zero() {
                let jitter = rand::thread_rng().gen_range(0.8..1.2);
                due += delay.mul_f64(jitter);
            }
            if loss > 0.0 && rand::thread_rng().gen_bool(loss.min(1.0)) {
                due = due.max(Instant::now()) + Duration::from_millis(200);
            }
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
                // The link may have been cut meanwhile.
                if rules.borrow().blocked(from, to) {
                    continue;
                }
            }
            break;
        }
        if writer.write_all(&data).await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
    reading.abort();
}

/// The member whose process owns the other end of an accepted connection.
async fn identify(shared: &Shared, peer: SocketAddr, proxy: SocketAddr) -> Option<usize> {
    for _ in 0..5 {
        let pids = shared.pids.lock().unwrap().clone();
        if let Some(index) = owner(&pids, peer, proxy) {
            return Some(index);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn proc_addr(addr: SocketAddr) -> Option<String> {
    match addr {
        SocketAddr::V4(v4) => Some(format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port())),
        SocketAddr::V6(_) => None,
    }
}

fn owner(pids: &[Option<u32>], peer: SocketAddr, proxy: SocketAddr) -> Option<usize> {
    let (local, remote) = (proc_addr(peer)?, proc_addr(proxy)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() > 9 && fields[1] == local && fields[2] == remote).then(|| fields[9].to_string())
    })?;
    let wanted = format!("socket:[{inode}]");
    pids.iter().enumerate().find_map(|(index, pid)| {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", (*pid)?)).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str()))
            .then_some(index)
    })
}
