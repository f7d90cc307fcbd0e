//! Member and cluster ids. As in etcd, a member of a new cluster gets an id derived from its
//! peer URLs and the cluster token, so every member computes the same ids from the same
//! `--initial-cluster`; a member added later gets one salted with the time of the add, so a
//! replaced member never reuses the id of the one it replaces. The id a member runs as is kept
//! in its data dir, so a restart needs no flags to find it.

use std::io;
use std::path::Path;

/// 64-bit FNV-1a: stable across Rust versions and platforms (ids are stored).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // Separate the parts, so ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn nonzero(id: u64) -> u64 {
    id.max(1)
}

/// The id of a member listed in `--initial-cluster`.
pub fn initial_member_id(peer_urls: &[String], cluster_token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let joined = urls.join(",");
    nonzero(fnv1a(&[joined.as_bytes(), cluster_token.as_bytes()]))
}

/// The id of a member added to a running cluster; `salt` is the time of the add.
pub fn added_member_id(peer_urls: &[String], cluster_token: &str, salt: u64) -> u64 {
    let base = initial_member_id(peer_urls, cluster_token);
    nonzero(fnv1a(&[&base.to_le_bytes(), &salt.to_le_bytes()]))
}

/// The cluster id in response headers: the same on every member started with the same token.
pub fn cluster_id(cluster_token: &str) -> u64 {
    nonzero(fnv1a(&[b"keel-cluster", cluster_token.as_bytes()]))
}

const MEMBER_ID_FILE: &str = "member-id";

/// The id this data dir's member runs as, if it has started before.
pub fn stored_member_id(data_dir: &Path) -> io::Result<Option<u64>> {
    match std::fs::read_to_string(data_dir.join(MEMBER_ID_FILE)) {
        Ok(text) => u64::from_str_radix(text.trim(), 16)
            .map(Some)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, format!("{MEMBER_ID_FILE}: {error}"))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Records the member's id, durably, before it first joins.
pub fn store_member_id(data_dir: &Path, id: u64) -> io::Result<()> {
    let path = data_dir.join(MEMBER_ID_FILE);
    let partial = path.with_extension("partial");
    std::fs::write(&partial, format!("{id:x}\n"))?;
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, &path)?;
    std::fs::File::open(data_dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_urls_token_and_salt_but_not_url_order() {
        let a = vec!["http://a:1".to_string(), "http://b:2".to_string()];
        let b = vec!["http://b:2".to_string(), "http://a:1".to_string()];
        assert_eq!(initial_member_id(&a, "t"), initial_member_id(&b, "t"));
        assert_ne!(initial_member_id(&a, "t"), initial_member_id(&a, "u"));
        assert_ne!(added_member_id(&a, "t", 1), added_member_id(&a, "t", 2));
        assert_ne!(cluster_id("t"), cluster_id("u"));
    }

    #[test]
    fn the_stored_id_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(stored_member_id(dir.path()).unwrap(), None);
        store_member_id(dir.path(), 0xdead_beef).unwrap();
        assert_eq!(stored_member_id(dir.path()).unwrap(), Some(0xdead_beef));
    }
}
