//! Revisions, as etcd numbers them.
//!
//! Every command that changes at least one key gets one new *main* revision; the keys it changes
//! get *sub* revisions 0, 1, 2, ... in the order the command changes them. A whole txn is one
//! command. The store starts at main revision 1, as etcd does, so the first write is revision 2.

/// A (main, sub) revision. Ordered by main, then sub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// Encoded length of a [`Revision`].
pub const REVISION_BYTES: usize = 16;

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The greatest revision whose main part is `main`: every (main, sub) sorts at or before it.
    pub const fn last_of(main: i64) -> Self {
        Revision { main, sub: i64::MAX }
    }

    /// Big-endian bytes: byte order equals revision order (both parts are never negative).
    pub fn to_bytes(self) -> [u8; REVISION_BYTES] {
        let mut out = [0u8; REVISION_BYTES];
        out[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        out[8..].copy_from_slice(&(self.sub as u64).to_be_bytes());
        out
    }

    /// Inverted bytes: byte order is *newest first*. Keys store versions this way so a seek to
    /// `key ‖ inverted(R)` lands on the newest version at or below R.
    pub fn to_inverted_bytes(self) -> [u8; REVISION_BYTES] {
        let mut out = self.to_bytes();
        for byte in &mut out {
            *byte = !*byte;
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; REVISION_BYTES] = bytes.try_into().ok()?;
        let main = u64::from_be_bytes(bytes[..8].try_into().ok()?);
        let sub = u64::from_be_bytes(bytes[8..].try_into().ok()?);
        Some(Revision::new(main as i64, sub as i64))
    }

    pub fn from_inverted_bytes(bytes: &[u8]) -> Option<Self> {
        let mut plain: [u8; REVISION_BYTES] = bytes.try_into().ok()?;
        for byte in &mut plain {
            *byte = !*byte;
        }
        Self::from_bytes(&plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_orders_follow_revision_order() {
        let revisions = [
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(2, 0),
            Revision::new(256, 3),
            Revision::last_of(256),
            Revision::new(1 << 40, 0),
        ];
        for pair in revisions.windows(2) {
            assert!(pair[0].to_bytes() < pair[1].to_bytes(), "{pair:?}");
            assert!(pair[0].to_inverted_bytes() > pair[1].to_inverted_bytes(), "{pair:?}");
        }
        for revision in revisions {
            assert_eq!(Revision::from_bytes(&revision.to_bytes()), Some(revision));
            assert_eq!(Revision::from_inverted_bytes(&revision.to_inverted_bytes()), Some(revision));
        }
    }
}
