//! Direction relative to a home network: the `home_net` prefixes that FLOW
//! and DIRECTION both take, and the four words of ECS `network.direction`.
//! It lives here, once, because no plugin crate may depend on another.

use crate::options::{OptValue, Options};
use std::net::IpAddr;

/// A `home_net` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HomeNetError {
    /// A word that is not an address or an address/length.
    #[error("`{0}` is not an IPv4 or IPv6 address or prefix (e.g. 10.0.0.0/8, 2001:db8::/32)")]
    NotAPrefix(String),
    /// A prefix length longer than the address.
    #[error("`{word}`: prefix length {len} is longer than the address ({max} bits)")]
    TooLong {
        /// The word as written.
        word: String,
        /// The length given.
        len: u32,
        /// 32 or 128.
        max: u32,
    },
}

/// Where a flow or a packet goes relative to the home network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From outside to a home address.
    Inbound,
    /// From a home address to outside.
    Outbound,
    /// Between home addresses.
    Internal,
    /// Between outside addresses (transit, or a SPAN port seeing others).
    External,
}

impl Direction {
    /// The ECS `network.direction` word.
    pub fn word(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Internal => "internal",
            Direction::External => "external",
        }
    }
}

/// The home network: a list of IPv4 and IPv6 prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HomeNet {
    /// (network, mask), host order.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

fn mask32(len: u32) -> u32 {
    u32::MAX.checked_shl(32 - len).unwrap_or(0)
}

fn mask128(len: u32) -> u128 {
    u128::MAX.checked_shl(128 - len).unwrap_or(0)
}

impl HomeNet {
    /// Parses prefixes separated by commas or white space; a bare address
    /// is a host (/32, /128). Host bits after the prefix are ignored, as
    /// routers do. An empty text is an empty home network.
    pub fn parse(text: &str) -> Result<HomeNet, HomeNetError> {
        let mut h = HomeNet::default();
        for word in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
        {
            let (addr, len) = match word.split_once('/') {
                Some((a, l)) => (a, Some(l)),
                None => (word, None),
            };
            let bad = || HomeNetError::NotAPrefix(word.to_string());
            let ip: IpAddr = addr.parse().map_err(|_| bad())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match len {
                Some(l) => l.parse::<u32>().map_err(|_| bad())?,
                None => max,
            };
            if len > max {
                return Err(HomeNetError::TooLong {
                    word: word.to_string(),
                    len,
                    max,
                });
            }
            match ip {
                IpAddr::V4(a) => {
                    let m = mask32(len);
                    h.v4.push((u32::from(a) & m, m));
                }
                IpAddr::V6(a) => {
                    let m = mask128(len);
                    h.v6.push((u128::from(a) & m, m));
                }
            }
        }
        Ok(h)
    }

    /// Whether no prefix is configured.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `ip` is inside one of the prefixes. An IPv4-mapped IPv6
    /// address is matched as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.contains_v4(u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(m) => self.contains_v4(u32::from(m)),
                None => {
                    let a = u128::from(a);
                    self.v6.iter().any(|&(n, m)| a & m == n)
                }
            },
        }
    }

    fn contains_v4(&self, a: u32) -> bool {
        self.v4.iter().any(|&(n, m)| a & m == n)
    }

    /// The direction from `src` (the initiator, or a packet's sender) to
    /// `dst`.
    pub fn direction(&self, src: IpAddr, dst: IpAddr) -> Direction {
        match (self.contains(src), self.contains(dst)) {
            (true, true) => Direction::Internal,
            (true, false) => Direction::Outbound,
            (false, true) => Direction::Inbound,
            (false, false) => Direction::External,
        }
    }
}

/// The `.check` of a `home_net` option: the config check names the line of
/// a prefix that does not parse.
pub fn check_home_net(v: &OptValue, _: &Options) -> Result<(), String> {
    HomeNet::parse(&v.to_string())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_four_directions_in_ipv4_and_ipv6() {
        let h = HomeNet::parse("192.168.0.0/16, 2001:db8:1::/48").unwrap();
        let cases = [
            ("192.168.1.2", "8.8.8.8", Outbound),
            ("8.8.8.8", "192.168.200.1", Inbound),
            ("192.168.1.2", "192.168.3.4", Internal),
            ("8.8.8.8", "1.1.1.1", External),
            ("2001:db8:1::5", "2001:4860::8888", Outbound),
            ("2001:4860::8888", "2001:db8:1:ffff::1", Inbound),
            ("2001:db8:1::5", "2001:db8:1:2::6", Internal),
            ("2001:db8:2::5", "2001:4860::8888", External),
        ];
        for (s, d, want) in cases {
            assert_eq!(h.direction(ip(s), ip(d)), want, "{s} -> {d}");
        }
        assert_eq!(Inbound.word(), "inbound");
        assert_eq!(External.word(), "external");
    }

    #[test]
    fn prefixes_of_several_lengths_match_at_their_boundaries() {
        let h = HomeNet::parse("10.0.0.0/8 172.16.0.0/12\t203.0.113.7 0.0.0.0/0,fe80::/10 2001:db8::1/128 2001:db8:a::/63").unwrap();
        let v4_only = HomeNet::parse("10.0.0.0/8 172.16.0.0/12 203.0.113.7").unwrap();
        for (a, inside) in [
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("172.31.255.255", true),
            ("172.32.0.0", false),
            ("172.15.255.255", false),
            ("203.0.113.7", true),
            ("203.0.113.8", false),
            ("::ffff:10.1.2.3", true),
        ] {
            assert_eq!(v4_only.contains(ip(a)), inside, "{a}");
        }
        // /0 holds every IPv4 address, and no IPv6 one.
        assert!(h.contains(ip("8.8.8.8")));
        for (a, inside) in [
            ("fe80::1", true),
            ("febf:ffff::1", true),
            ("fec0::1", false),
            ("2001:db8::1", true),
            ("2001:db8::2", false),
            ("2001:db8:a:1::1", true),
            ("2001:db8:a:2::1", false),
            ("2001:db8:b::1", false),
        ] {
            assert_eq!(h.contains(ip(a)), inside, "{a}");
        }
        // Host bits after the length are dropped, not refused.
        assert!(HomeNet::parse("10.1.2.3/8")
            .unwrap()
            .contains(ip("10.9.9.9")));
        assert!(HomeNet::parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_prefixes_say_what_is_wrong() {
        assert_eq!(
            HomeNet::parse("10.0.0.0/33"),
            Err(HomeNetError::TooLong {
                word: "10.0.0.0/33".into(),
                len: 33,
                max: 32
            })
        );
        assert!(matches!(
            HomeNet::parse("10.0.0.0/8 lan"),
            Err(HomeNetError::NotAPrefix(w)) if w == "lan"
        ));
        assert!(HomeNet::parse("2001:db8::/129").is_err());
        assert!(HomeNet::parse("10.0.0/8").is_err());
        assert!(check_home_net(&OptValue::Str("10.0.0.0/x".into()), &Options::default()).is_err());
    }
}
