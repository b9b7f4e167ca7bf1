//! Client addresses as limits count them.

use std::net::{IpAddr, Ipv6Addr};

/// The network a client address counts as for a limit (a throttle, a connection cap): an IPv4
/// address as is, also when mapped into IPv6; an IPv6 address by its /64, since one subscriber
/// usually holds a whole /64 and could otherwise use a new address per attempt.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = v6.to_bits() & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from_bits(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::7".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::7".parse().expect("ip");
        assert_eq!(client_network(a), client_network(b));
        assert_ne!(client_network(a), client_network(c));
        assert_eq!(
            client_network(a),
            "2001:db8:1:2::".parse::<IpAddr>().expect("ip")
        );
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        let v4: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(client_network(mapped), v4);
        assert_eq!(client_network(v4), v4);
    }
}
