//! The Service IP range (`--service-cluster-ip-range`) and where its allocations live in the
//! store: one key per allocated address, `/registry/ipaddresses/<ip>`, holding an
//! `networking.k8s.io/v1` IPAddress naming the Service that holds it, as kube-apiserver 1.33
//! keeps them (its IPAddress-based allocator, the default since 1.33).
//!
//! kube-apiserver writes the IPAddress before the Service and repairs leaks with a controller;
//! keel writes both in one store txn (`service_allocation.rs`), so a key exists exactly while a
//! Service holds its address.
//!
//! Addresses are handled as `u128` offsets, one arithmetic for both families. As in
//! kube-apiserver, the network address (and, for IPv4, the broadcast address) is never handed
//! out, and dynamic allocation prefers the upper part of the range, leaving the lower part for
//! addresses clients ask for (KEP-3070): e.g. in 10.96.0.0/12 the first 256 addresses
//! (10.96.0.1 to 10.96.1.0) are only given to clients that name them, such as the `kubernetes`
//! Service's 10.96.0.1 and DNS's conventional 10.96.0.10.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use serde_json::{json, Value};

/// Host bits a range may have at most: kube-apiserver refuses a larger range ("the mask must
/// be >= 12" for IPv4).
const HOST_BITS_MAX: u32 = 20;

/// The store prefix of the allocated addresses.
pub const KEY_PREFIX: &str = "/registry/ipaddresses/";

/// A Service CIDR: the addresses between its first and last usable ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    network: u128,
    prefix_len: u32,
    ipv6: bool,
}

impl ServiceCidr {
    /// Parses `--service-cluster-ip-range`: one IPv4 or IPv6 CIDR.
    pub fn parse(text: &str) -> Result<ServiceCidr, String> {
        let text = text.trim();
        if text.contains(',') {
            return Err(format!("{text:?}: dual-stack Service CIDRs are not implemented yet; give one CIDR"));
        }
        let (address, prefix) =
            text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR such as 10.96.0.0/12"))?;
        let address: IpAddr = address.parse().map_err(|_| format!("{text:?}: {address:?} is not an IP address"))?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len: u32 = prefix
            .parse()
            .ok()
            .filter(|prefix| *prefix <= bits)
            .ok_or_else(|| format!("{text:?}: {prefix:?} is not a prefix length between 0 and {bits}"))?;
        let host_bits = bits - prefix_len;
        if host_bits > HOST_BITS_MAX {
            return Err(format!(
                "{text:?} is too large; for {bits}-bit addresses, the mask must be >= {}",
                bits - HOST_BITS_MAX
            ));
        }
        if host_bits < 2 {
            return Err(format!("{text:?} is too small: it leaves no address to allocate"));
        }
        let mask = if host_bits == 128 { 0 } else { !((1u128 << host_bits) - 1) };
        let network = to_number(address) & mask;
        Ok(ServiceCidr { network, prefix_len, ipv6: address.is_ipv6() })
    }

    fn host_bits(&self) -> u32 {
        (if self.ipv6 { 128 } else { 32 }) - self.prefix_len
    }

    /// The first address handed out: the one after the network address.
    pub fn first(&self) -> IpAddr {
        self.address(0).expect("a range has a first address")
    }

    /// How many addresses can be handed out.
    pub fn size(&self) -> u128 {
        let all = 1u128 << self.host_bits();
        // Without the network address, and for IPv4 the broadcast address.
        if self.ipv6 {
            all - 1
        } else {
            all - 2
        }
    }

    /// The address at `offset` from [`ServiceCidr::first`], if in range.
    pub fn address(&self, offset: u128) -> Option<IpAddr> {
        (offset < self.size()).then(|| from_number(self.network + 1 + offset, self.ipv6))
    }

    /// The offset of `address` from [`ServiceCidr::first`], if it can be handed out.
    pub fn offset(&self, address: IpAddr) -> Option<u128> {
        if address.is_ipv6() != self.ipv6 {
            return None;
        }
        let number = to_number(address);
        let offset = number.checked_sub(self.network + 1)?;
        (offset < self.size()).then_some(offset)
    }

    /// The addresses below this offset are only handed out on request (KEP-3070's static
    /// subrange): min(max(16, cidr size / 16), 256), none for a CIDR of fewer than 16 addresses.
    pub fn static_size(&self) -> u128 {
        let cidr_size = 1u128 << self.host_bits();
        if cidr_size < 16 {
            0
        } else {
            (cidr_size / 16).clamp(16, 256).min(self.size())
        }
    }

    /// `IPv4` or `IPv6`, as `spec.ipFamilies` says it.
    pub fn family(&self) -> &'static str {
        if self.ipv6 {
            "IPv6"
        } else {
            "IPv4"
        }
    }
}

impl std::fmt::Display for ServiceCidr {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{}", from_number(self.network, self.ipv6), self.prefix_len)
    }
}

fn to_number(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_number(number: u128, ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::from(number))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(number).expect("an IPv4 range holds 32-bit numbers")))
    }
}

/// The store key of an allocated address (its canonical text, as IPAddress objects are named).
pub fn key(address: IpAddr) -> Bytes {
    Bytes::from(format!("{KEY_PREFIX}{address}"))
}

/// The IPAddress record of `address` held by the Service `namespace/name`. It is the same bytes
/// for the same holder, so a release can delete the key only if it still names that holder.
pub fn record(address: IpAddr, family: &str, namespace: &str, name: &str) -> Bytes {
    let value: Value = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {
            "name": address.to_string(),
            "labels": {
                "ipaddress.kubernetes.io/ip-family": family,
                "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
            },
        },
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": namespace, "name": name}},
    });
    Bytes::from(serde_json::to_vec(&value).expect("a JSON value encodes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_range() {
        let cidr = ServiceCidr::parse("10.96.0.0/12").unwrap();
        assert_eq!(cidr.to_string(), "10.96.0.0/12");
        assert_eq!(cidr.first().to_string(), "10.96.0.1");
        assert_eq!(cidr.size(), (1 << 20) - 2);
        assert_eq!(cidr.address(cidr.size() - 1).unwrap().to_string(), "10.111.255.254");
        assert_eq!(cidr.address(cidr.size()), None, "the broadcast address is not handed out");
        assert_eq!(cidr.offset("10.96.0.10".parse().unwrap()), Some(9));
        assert_eq!(cidr.offset("10.96.0.0".parse().unwrap()), None, "the network address");
        assert_eq!(cidr.offset("10.112.0.1".parse().unwrap()), None);
        assert_eq!(cidr.offset("fd00::1".parse().unwrap()), None);
        assert_eq!(cidr.static_size(), 256);
        assert_eq!(key("10.96.0.1".parse().unwrap()), "/registry/ipaddresses/10.96.0.1");
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(ServiceCidr::parse("10.96.3.4/24").unwrap().to_string(), "10.96.3.0/24");
        assert_eq!(ServiceCidr::parse("10.0.0.0/28").unwrap().static_size(), 14, "all of a small range");
        assert_eq!(ServiceCidr::parse("10.0.0.0/24").unwrap().static_size(), 16);
        assert_eq!(ServiceCidr::parse("10.0.0.0/29").unwrap().static_size(), 0);
        let v6 = ServiceCidr::parse("fd00:10:96::/112").unwrap();
        assert_eq!(v6.first().to_string(), "fd00:10:96::1");
        assert_eq!(v6.size(), (1 << 16) - 1);
        assert_eq!(v6.family(), "IPv6");
        for bad in ["10.96.0.0", "10.96.0.0/8", "10.0.0.0/31", "bogus/12", "10.0.0.0/33", "10.0.0.0/24,fd00::/112"] {
            assert!(ServiceCidr::parse(bad).is_err(), "{bad}");
        }
        assert!(ServiceCidr::parse("10.96.0.0/8").unwrap_err().contains("the mask must be >= 12"));
    }
}
