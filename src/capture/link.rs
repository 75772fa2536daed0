//! Frames of other link types made into Ethernet frames, so that the one decoder reads them all: raw
//! IP (LINKTYPE_RAW 101, IPV4 228, IPV6 229) gets a header with zero addresses; Linux cooked
//! captures (SLL 113, SLL2 276, what `tcpdump -i any` writes) keep the protocol and the sender's
//! link-layer address they carry. An Ethernet frame (1) is used as it is.

/// LINKTYPE_ETHERNET.
pub(crate) const ETHERNET: u32 = 1;
/// LINKTYPE_RAW: an IPv4 or IPv6 packet, the version nibble says which.
pub(crate) const RAW: u32 = 101;
/// LINKTYPE_LINUX_SLL.
pub(crate) const SLL: u32 = 113;
/// LINKTYPE_IPV4.
pub(crate) const IPV4: u32 = 228;
/// LINKTYPE_IPV6.
pub(crate) const IPV6: u32 = 229;
/// LINKTYPE_LINUX_SLL2.
pub(crate) const SLL2: u32 = 276;

/// SLL packet types (`sll_pkttype`).
const PACKET_BROADCAST: u8 = 1;
const PACKET_MULTICAST: u8 = 2;

/// Whether tapstack reads this link type.
pub(crate) fn known(link: u32) -> bool {
    matches!(link, ETHERNET | RAW | SLL | IPV4 | IPV6 | SLL2)
}

/// `data` of link type `link` as an Ethernet frame: `data` itself, or `buf` holding a synthesized
/// header and the payload (`buf` is reused from frame to frame). `None`: an unknown link type.
pub(crate) fn to_ethernet<'a>(link: u32, data: &'a [u8], buf: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    let (ethertype, src, pkttype, payload) = match link {
        ETHERNET => return Some(data),
        RAW => {
            let t = match data.first().map(|b| b >> 4) {
                Some(6) => 0x86dd,
                _ => 0x0800,
            };
            (t, None, 0, data)
        }
        IPV4 => (0x0800, None, 0, data),
        IPV6 => (0x86dd, None, 0, data),
        SLL => {
            // pkttype(2) hatype(2) halen(2) addr(8) protocol(2)
            if data.len() < 16 {
                (0, None, 0, data)
            } else {
                let halen = u16::from_be_bytes([data[4], data[5]]) as usize;
                let addr = (halen == 6).then(|| &data[6..12]);
                (
                    u16::from_be_bytes([data[14], data[15]]),
                    addr,
                    data[1],
                    &data[16..],
                )
            }
        }
        SLL2 => {
            // protocol(2) reserved(2) ifindex(4) hatype(2) pkttype(1) halen(1) addr(8)
            if data.len() < 20 {
                (0, None, 0, data)
            } else {
                let addr = (data[11] == 6).then(|| &data[12..18]);
                (
                    u16::from_be_bytes([data[0], data[1]]),
                    addr,
                    data[10],
                    &data[20..],
                )
            }
        }
        _ => return None,
    };
    buf.clear();
    let dst: [u8; 6] = match pkttype {
        PACKET_BROADCAST => [0xff; 6],
        PACKET_MULTICAST => [0x01, 0, 0x5e, 0, 0, 1],
        _ => [0; 6],
    };
    buf.extend_from_slice(&dst);
    buf.extend_from_slice(src.unwrap_or(&[0; 6]));
    buf.extend_from_slice(&ethertype.to_be_bytes());
    buf.extend_from_slice(payload);
    Some(&buf[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_raw_ip_gets_an_ethernet_header_by_version() {
        let mut buf = Vec::new();
        let v4 = [0x45u8, 0, 0, 20];
        let f = to_ethernet(RAW, &v4, &mut buf).unwrap();
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(&f[14..], &v4);
        let v6 = [0x60u8, 0, 0, 0];
        let f = to_ethernet(RAW, &v6, &mut buf).unwrap();
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        let f = to_ethernet(IPV6, &v4, &mut buf).unwrap();
        assert_eq!(
            &f[12..14],
            &[0x86, 0xdd],
            "the link type decides, not the bytes"
        );
    }

    #[test]
    fn test_cooked_captures_keep_protocol_and_sender_address() {
        let mut buf = Vec::new();
        let mut sll = vec![0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 9, 0, 0, 0x08, 0x06];
        sll.extend_from_slice(&[0xaa; 28]);
        let f = to_ethernet(SLL, &sll, &mut buf).unwrap();
        assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(f.len(), 14 + 28);
        let mut sll2 = vec![
            0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 1, 6, 2, 0, 0, 0, 0, 7, 0, 0,
        ];
        sll2.extend_from_slice(&[0x60; 40]);
        let f = to_ethernet(SLL2, &sll2, &mut buf).unwrap();
        assert_eq!(&f[..6], &[0xff; 6], "broadcast");
        assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 7]);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        // Too short to hold the cooked header: passed on for the decoder to call malformed.
        assert!(to_ethernet(SLL2, &[1, 2, 3], &mut buf).is_some());
        assert!(to_ethernet(147, &[1, 2, 3], &mut buf).is_none());
    }
}
