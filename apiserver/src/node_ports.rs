//! The NodePort range (`--service-node-port-range`, 30000-32767 by default) and where its
//! allocations live in the store: one key per allocated port, `/registry/servicenodeports/<port>`
//! (five digits, so keys sort as numbers), naming the Service that holds it. As for Service IPs
//! (`service_ip.rs`), the key is written in the same store txn as the Service, so it exists
//! exactly while a Service holds the port.
//!
//! A port is allocated whatever its protocol, as kube-apiserver's one bitmap does: TCP 30080 of
//! one Service and UDP 30080 of another cannot both exist. Dynamic allocation prefers the upper
//! part of the range; the lowest min(max(16, size / 32), 128) ports (30000-30085 by default)
//! are only given to clients that name them (KEP-3668).

use bytes::Bytes;
use serde_json::json;

/// The store prefix of the allocated ports.
pub const KEY_PREFIX: &str = "/registry/servicenodeports/";

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub base: u16,
    pub size: u16,
}

impl PortRange {
    pub const DEFAULT: PortRange = PortRange { base: 30000, size: 2768 };

    /// Parses kube-apiserver's forms: `30000-32767`, `30000+2767` (base and the number of ports
    /// after it) or a single port.
    pub fn parse(text: &str) -> Result<PortRange, String> {
        let text = text.trim();
        let number = |part: &str| -> Result<u32, String> {
            part.trim().parse::<u32>().map_err(|_| format!("{text:?} is not a port range such as 30000-32767"))
        };
        let (low, high) = if let Some((low, high)) = text.split_once('-') {
            (number(low)?, number(high)?)
        } else if let Some((low, extra)) = text.split_once('+') {
            let low = number(low)?;
            (low, low + number(extra)?)
        } else {
            let port = number(text)?;
            (port, port)
        };
        if low == 0 || high > u16::MAX as u32 || low > high {
            return Err(format!("{text:?}: the ports must be between 1 and 65535, the first no greater than the last"));
        }
        Ok(PortRange { base: low as u16, size: (high - low + 1) as u16 })
    }

    pub fn last(&self) -> u16 {
        self.base + (self.size - 1)
    }

    pub fn contains(&self, port: i64) -> bool {
        port >= self.base as i64 && port <= self.last() as i64
    }

    /// The ports below `base` + this are only handed out on request.
    pub fn static_size(&self) -> u16 {
        if self.size <= 16 {
            0
        } else {
            (self.size / 32).clamp(16, 128)
        }
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}-{}", self.base, self.last())
    }
}

/// The store key of an allocated port.
pub fn key(port: u16) -> Bytes {
    Bytes::from(format!("{KEY_PREFIX}{port:05}"))
}

/// The record of a port held by the Service `namespace/name`: the same bytes for the same
/// holder, so a release can delete the key only if it still names that holder.
pub fn record(namespace: &str, name: &str) -> Bytes {
    let value = json!({"parentRef": {"group": "", "resource": "services", "namespace": namespace, "name": name}});
    Bytes::from(serde_json::to_vec(&value).expect("a JSON value encodes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let range = PortRange::parse("30000-32767").unwrap();
        assert_eq!(range, PortRange::DEFAULT);
        assert_eq!(range.to_string(), "30000-32767");
        assert_eq!(range.static_size(), 86);
        assert_eq!(PortRange::parse("30000+2767").unwrap(), PortRange::DEFAULT);
        assert_eq!(PortRange::parse("8080").unwrap(), PortRange { base: 8080, size: 1 });
        assert!(range.contains(30000) && range.contains(32767) && !range.contains(29999) && !range.contains(32768));
        for bad in ["", "a-b", "0-10", "20-10", "1-70000", "30000+40000"] {
            assert!(PortRange::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(key(8080), "/registry/servicenodeports/08080");
    }
}
