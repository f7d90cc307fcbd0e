//! Loopback ports for the processes a test or a Jepsen run starts. A port the kernel hands out
//! for `:0` can be handed out again, to another test process or to an outgoing connection,
//! before the server that was meant to have it binds it; then two tests' clients reach the same
//! server. So ports come from below the kernel's ephemeral range (32768 and up by default), each
//! claimed by a lock file that this process holds until it exits.

use std::fs::File;
use std::net::TcpListener;
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

/// Claims held for the life of the process.
static CLAIMS: Mutex<Vec<Flock<File>>> = Mutex::new(Vec::new());

/// A loopback port that no other caller of this function holds and nothing listens on.
pub fn claim() -> Result<u16, String> {
    let dir = std::env::temp_dir().join("keel-test-ports");
    std::fs::create_dir_all(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.subsec_nanos());
    let start = std::process::id().wrapping_mul(7_919).wrapping_add(nanos);
    for attempt in 0..COUNT {
        let port = (FIRST + start.wrapping_add(attempt) % COUNT) as u16;
        let path = dir.join(port.to_string());
        let claim = File::create(&path).map_err(|error| format!("{}: {error}", path.display()))?;
        // A lock is held per open file, so a second claim from this process fails as well.
        let Ok(claim) = Flock::lock(claim, FlockArg::LockExclusiveNonblock) else { continue };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            CLAIMS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(claim);
            return Ok(port);
        }
    }
    Err(format!("no free loopback port in {FIRST}..{}", FIRST + COUNT))
}

#[cfg(test)]
mod tests {
    #[test]
    fn claimed_ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| super::claim().unwrap()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for port in ports {
            assert!((20_000..32_000).contains(&port));
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
