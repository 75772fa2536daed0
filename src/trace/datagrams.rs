//! Which fragments make a whole datagram. A wire fact, not a guess at what the stack did: when the
//! fragments of one datagram that crossed the device add up to its full length, the frame that
//! completed them says so ("completes the 8008-byte datagram"), so a learner sees the pieces and the
//! datagram they make. Bounded: a few datagrams at a time, forgotten after the stack's own
//! reassembly timeout.

use std::net::IpAddr;

use super::decode::Decoded;

/// Datagrams followed at once; a flood of unfinished ones pushes out the oldest.
const FOLLOWED: usize = 64;
/// The stack's reassembly timeout (`stack::REASSEMBLY_TIMEOUT`): after it, the pieces are moot.
const FORGET_US: i64 = 5_000_000;

struct Partial {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    first_us: i64,
    /// Bytes of the datagram seen so far.
    bytes: u32,
    /// Its length, once the last fragment (no "more fragments") was seen.
    total: Option<u32>,
}

/// The datagrams whose fragments are on their way.
#[derive(Default)]
pub(crate) struct Datagrams {
    partial: Vec<Partial>,
}

impl Datagrams {
    /// Follows one fragment that reached the device (lost ones are not part of anything); returns
    /// the datagram's length when this fragment completed it.
    pub(crate) fn fragment(&mut self, t_us: i64, d: &Decoded) -> Option<u32> {
        let ip = d.ip?;
        let fr = ip.fragment?;
        if d.malformed.is_some() || d.bad_checksum.is_some() {
            return None;
        }
        self.partial.retain(|p| t_us - p.first_us < FORGET_US);
        let i = match self
            .partial
            .iter()
            .position(|p| p.src == ip.src && p.dst == ip.dst && p.id == fr.id)
        {
            Some(i) => i,
            None => {
                if self.partial.len() >= FOLLOWED {
                    self.partial.remove(0);
                }
                self.partial.push(Partial {
                    src: ip.src,
                    dst: ip.dst,
                    id: fr.id,
                    first_us: t_us,
                    bytes: 0,
                    total: None,
                });
                self.partial.len() - 1
            }
        };
        let p = &mut self.partial[i];
        p.bytes += u32::from(fr.len);
        if !fr.more {
            p.total = Some(u32::from(fr.offset) + u32::from(fr.len));
        }
        // A duplicated fragment overshoots and never completes: no claim rather than a wrong one.
        let done = p.total.filter(|&t| t == p.bytes);
        if done.is_some() {
            self.partial.remove(i);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::decode::{FragInfo, IpInfo};

    fn frag(id: u32, offset: u16, len: u16, more: bool) -> Decoded {
        Decoded {
            ip: Some(IpInfo {
                version: 4,
                src: "192.168.69.100".parse().unwrap(),
                dst: "192.168.69.1".parse().unwrap(),
                proto: 17,
                proto_name: "UDP",
                ttl: 64,
                len: 20 + len,
                fragment: Some(FragInfo {
                    offset,
                    more,
                    id,
                    len,
                }),
            }),
            ..Decoded::default()
        }
    }

    #[test]
    fn test_the_fragment_that_completes_a_datagram_says_so_in_any_order() {
        let mut d = Datagrams::default();
        assert_eq!(d.fragment(0, &frag(7, 0, 1480, true)), None);
        // The last one first: the length is known, the middle is missing.
        assert_eq!(d.fragment(1, &frag(7, 2960, 48, false)), None);
        assert_eq!(d.fragment(2, &frag(7, 1480, 1480, true)), Some(3008));
        assert!(d.partial.is_empty(), "a finished datagram is forgotten");
    }

    #[test]
    fn test_duplicates_never_complete_and_old_pieces_are_forgotten() {
        let mut d = Datagrams::default();
        d.fragment(0, &frag(1, 0, 1480, true));
        d.fragment(0, &frag(1, 0, 1480, true));
        assert_eq!(d.fragment(0, &frag(1, 1480, 8, false)), None);
        // Five seconds later the first datagram's pieces are gone.
        d.fragment(FORGET_US, &frag(2, 0, 1480, true));
        assert_eq!(d.partial.len(), 1);
        for id in 10..10 + FOLLOWED as u32 + 5 {
            d.fragment(FORGET_US, &frag(id, 0, 8, true));
        }
        assert_eq!(d.partial.len(), FOLLOWED, "bounded");
    }
}
