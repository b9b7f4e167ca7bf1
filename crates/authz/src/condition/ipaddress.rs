//! OpenFGA's `ipaddress` parameter type and its `in_cidr` member function, added to cel.
//!
//! cel has no IP type, so [`IpAddress`] is a [`Val`] of our own: an opaque value (no
//! operators besides `==`/`!=`) whose only function is `in_cidr(string) -> bool`, declared as a
//! member overload on the [`Env`] for the receiver type [`IPADDRESS_TYPE`]. Semantics follow Go's
//! `net/netip` as OpenFGA uses it: the CIDR is parsed with `netip.ParsePrefix` rules (the address
//! part need not be masked, the prefix length is decimal without leading zeros) and an address
//! only matches a prefix of its own family, so an IPv4-mapped IPv6 address never matches an
//! IPv4 prefix.

use cel::common::types::{CelBool, CelString, STRING_TYPE, Type};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};
use std::any::Any;
use std::net::IpAddr;

/// The CEL type of `ipaddress` values (cel-go names it `IPAddress` in OpenFGA).
pub(crate) static IPADDRESS_TYPE: Type = Type::new_unspecified_type("IPAddress");

/// The name of the member function, as OpenFGA spells it.
pub(crate) const IN_CIDR: &str = "in_cidr";

/// An `ipaddress` parameter value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpAddress(pub(crate) IpAddr);

impl IpAddress {
    /// Parses an address as OpenFGA does (IPv4 dotted quad or IPv6 text form).
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        s.parse::<IpAddr>().map(IpAddress).map_err(|_| {
            format!("failed to convert '{s}' to IPAddress: ParseAddr(\"{s}\"): unable to parse IP")
        })
    }
}

impl Val for IpAddress {
    fn get_type(&self) -> &Type {
        &IPADDRESS_TYPE
    }

    fn cel_type() -> &'static Type {
        &IPADDRESS_TYPE
    }

    fn equals(&self, other: &dyn Val) -> bool {
        other
            .downcast_ref::<IpAddress>()
            .is_some_and(|o| o.0 == self.0)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(*self)
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for IpAddress {}

/// A parsed CIDR prefix: network address (not necessarily masked) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `addr/bits` with the rules of Go's `netip.ParsePrefix`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let malformed = || format!("'{s}' is a malformed CIDR string");
        let (addr, bits) = s.split_once('/').ok_or_else(malformed)?;
        let addr: IpAddr = addr.parse().map_err(|_| malformed())?;
        let digits_only = !bits.is_empty() && bits.bytes().all(|b| b.is_ascii_digit());
        let leading_zero = bits.len() > 1 && bits.starts_with('0');
        if !digits_only || leading_zero {
            return Err(malformed());
        }
        let bits: u8 = bits.parse().map_err(|_| malformed())?;
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if bits > max {
            return Err(malformed());
        }
        Ok(Cidr { addr, bits })
    }

    /// Whether `ip` lies in this prefix. Different address families never match.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `ipaddress.in_cidr(string) -> bool`. A malformed CIDR is an evaluation error, as in OpenFGA,
/// never `false`: a typo in a model or context must not silently deny or allow.
fn in_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [ip, cidr] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let ip = ip.downcast_ref::<IpAddress>().ok_or_else(|| {
        ExecutionError::function_error(
            IN_CIDR,
            "an IPAddress parameter value is required for comparison",
        )
    })?;
    let cidr = cidr.downcast_ref::<CelString>().ok_or_else(|| {
        ExecutionError::function_error(IN_CIDR, "a CIDR string is required for comparison")
    })?;
    let network =
        Cidr::parse(cidr.inner()).map_err(|e| ExecutionError::function_error(IN_CIDR, e))?;
    Ok(CowVal::owned(CelBool::from(network.contains(ip.0))))
}

/// `ipaddress(string) -> ipaddress`, so an expression can compare with a literal address
/// (`ip != ipaddress("192.0.0.1")`, as in OpenFGA's language test models). A malformed address
/// is an evaluation error.
fn ipaddress_from_string<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = args.as_slice() else {
        return Err(ExecutionError::invalid_argument_count(1, args.len()));
    };
    let s = s
        .downcast_ref::<CelString>()
        .ok_or_else(|| ExecutionError::function_error(IPADDRESS, "expected a string"))?;
    let ip =
        IpAddress::parse(s.inner()).map_err(|e| ExecutionError::function_error(IPADDRESS, e))?;
    Ok(CowVal::owned(ip))
}

/// The name of the conversion function.
pub(crate) const IPADDRESS: &str = "ipaddress";

/// Declares `in_cidr` and `ipaddress()` on `env`.
pub(crate) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload(
        IN_CIDR,
        "ipaddr_in_cidr",
        IPADDRESS_TYPE.to_owned(),
        vec![STRING_TYPE],
        in_cidr,
    )?;
    env.add_overload(
        IPADDRESS,
        "string_to_ipaddress",
        vec![STRING_TYPE],
        ipaddress_from_string,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn cidr_parsing_follows_netip() {
        for good in [
            "192.168.0.0/24",
            "192.168.0.7/24",
            "0.0.0.0/0",
            "10.0.0.1/32",
            "::/0",
            "2001:db8::/32",
            "::ffff:10.0.0.0/104",
        ] {
            assert!(Cidr::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "192.168.0.0",
            "192.168.0.0/",
            "192.168.0.0/33",
            "192.168.0.0/024",
            "192.168.0.0/+24",
            "192.168.0.0/-1",
            "192.168.0.0/ 24",
            "192.168.0/24",
            "2001:db8::/129",
            "fe80::1%eth0/64",
            "/24",
            "abc/8",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn containment() {
        let net = Cidr::parse("192.168.0.0/24").expect("test cidr");
        assert!(net.contains(ip("192.168.0.1")));
        assert!(net.contains(ip("192.168.0.255")));
        assert!(!net.contains(ip("192.168.1.0")));
        assert!(
            !net.contains(ip("::ffff:192.168.0.1")),
            "families never mix"
        );
        let all = Cidr::parse("0.0.0.0/0").expect("test cidr");
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::1")));
        let v6 = Cidr::parse("2001:db8::/32").expect("test cidr");
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let host = Cidr::parse("10.1.2.3/32").expect("test cidr");
        assert!(host.contains(ip("10.1.2.3")));
        assert!(!host.contains(ip("10.1.2.4")));
        let unmasked = Cidr::parse("10.1.2.3/8").expect("test cidr");
        assert!(unmasked.contains(ip("10.200.0.1")));
    }
}
