//! Connection 4-tuples as hash-map keys. The derived `Hash` of a pair of socket addresses makes a
//! dozen small `write` calls (enum tags, octets, ports), each a round through SipHash's buffering;
//! packing the tuple into one byte string and writing it once is measurably cheaper (BENCHMARKS.md).
//! SipHash itself stays: peers choose these values, so the keys must not be predictable.

use std::hash::Hasher;
use std::net::IpAddr;

/// The longest packed tuple: a tag, two IPv6 addresses and two ports.
const MAX: usize = 1 + 2 * (16 + 2);

/// Writes `tag`, then both ends, into `h` in a single `write`. Equal tuples give equal bytes, and the
/// bytes are unambiguous (the address family is in the length), as `Hash` must be with `Eq`.
pub(crate) fn hash_tuple<H: Hasher>(h: &mut H, tag: u8, a: (IpAddr, u16), b: (IpAddr, u16)) {
    let mut buf = [0u8; MAX];
    buf[0] = tag;
    let mut n = 1;
    for (ip, port) in [a, b] {
        match ip {
            IpAddr::V4(v4) => {
                buf[n..n + 4].copy_from_slice(&v4.octets());
                n += 4;
            }
            IpAddr::V6(v6) => {
                buf[n..n + 16].copy_from_slice(&v6.octets());
                n += 16;
            }
        }
        buf[n..n + 2].copy_from_slice(&port.to_be_bytes());
        n += 2;
    }
    // A v4 and a v6 end give the same length both ways round: the family order goes into the tag.
    buf[0] ^= (matches!(a.0, IpAddr::V6(_)) as u8) << 7;
    h.write(&buf[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, RandomState};

    fn h(tag: u8, a: (IpAddr, u16), b: (IpAddr, u16)) -> u64 {
        // One fixed state, so equal inputs hash equally.
        thread_local!(static S: RandomState = RandomState::new());
        S.with(|s| {
            let mut x = s.build_hasher();
            hash_tuple(&mut x, tag, a, b);
            x.finish()
        })
    }

    #[test]
    fn distinct_tuples_hash_apart_and_equal_ones_together() {
        let v4: IpAddr = "192.168.69.1".parse().unwrap();
        let w4: IpAddr = "192.168.69.100".parse().unwrap();
        let v6: IpAddr = "fdaa::1".parse().unwrap();
        let base = h(6, (v4, 7), (w4, 40000));
        assert_eq!(base, h(6, (v4, 7), (w4, 40000)));
        for other in [
            h(17, (v4, 7), (w4, 40000)),
            h(6, (w4, 40000), (v4, 7)),
            h(6, (v4, 7), (w4, 40001)),
            h(6, (v4, 8), (w4, 40000)),
        ] {
            assert_ne!(base, other);
        }
        // Mixed families with the same total length, either way round.
        assert_ne!(h(6, (v4, 1), (v6, 2)), h(6, (v6, 1), (v4, 2)));
    }
}
