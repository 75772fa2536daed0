//! Internet checksums for the offload paths: completing the partial checksums a kernel leaves on
//! frames it hands over, and filling in the TCP checksums smoltcp leaves to a segmenting device.

use super::tap::ETHERNET_HEADER;

/// Completes a checksum the kernel left partial (`VIRTIO_NET_HDR_F_NEEDS_CSUM`): the field at
/// `start + offset` holds the pseudo-header sum; the one's-complement sum runs from `start` to the end.
/// Out-of-range values leave the frame as it is (the stack then drops it as a bad checksum).
pub(crate) fn complete(frame: &mut [u8], start: usize, offset: usize) {
    let field = start + offset;
    if field + 2 > frame.len() || start >= frame.len() {
        return;
    }
    let mut sum: u32 = 0;
    let data = &frame[start..];
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u32) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let mut csum = !(sum as u16);
    if csum == 0 {
        // For UDP a zero means "no checksum"; 0xffff is the same value in one's complement.
        csum = 0xffff;
    }
    frame[field..field + 2].copy_from_slice(&csum.to_be_bytes());
}

/// Where a TCP segment sits in an Ethernet frame, and its pseudo-header sum.
pub(crate) struct TcpInFrame {
    pub start: usize,
    pub header_len: usize,
    pub v6: bool,
    /// The folded, not complemented, sum of the pseudo-header (what `NEEDS_CSUM` expects in the field).
    pub pseudo_sum: u16,
}

fn words_sum(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum()
}

/// Finds the TCP segment of an IPv4 or IPv6 frame; `None` for anything else or anything inconsistent.
pub(crate) fn tcp_in_frame(frame: &[u8]) -> Option<TcpInFrame> {
    let eth = ETHERNET_HEADER;
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (ip_len, v6, mut sum, tcp_len) = match ethertype {
        0x0800 => {
            let ihl = (*frame.get(eth)? & 0x0f) as usize * 4;
            let total = u16::from_be_bytes([*frame.get(eth + 2)?, *frame.get(eth + 3)?]) as usize;
            if *frame.get(eth + 9)? != 6 || total < ihl || ihl < 20 {
                return None;
            }
            (
                ihl,
                false,
                words_sum(frame.get(eth + 12..eth + 20)?),
                total - ihl,
            )
        }
        0x86dd => {
            if *frame.get(eth + 6)? != 6 {
                return None;
            }
            let payload = u16::from_be_bytes([*frame.get(eth + 4)?, *frame.get(eth + 5)?]) as usize;
            (40, true, words_sum(frame.get(eth + 8..eth + 40)?), payload)
        }
        _ => return None,
    };
    let start = eth + ip_len;
    let header_len = ((*frame.get(start + 12)? >> 4) as usize) * 4;
    if start + tcp_len > frame.len() || header_len < 20 || header_len > tcp_len {
        return None;
    }
    sum += 6 + tcp_len as u32;
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    Some(TcpInFrame {
        start,
        header_len,
        v6,
        pseudo_sum: sum as u16,
    })
}

/// Computes and stores the TCP checksum of a frame (smoltcp leaves it to a segmenting device).
pub(crate) fn fill_tcp(frame: &mut [u8]) {
    if let Some(t) = tcp_in_frame(frame) {
        frame[t.start + 16..t.start + 18].copy_from_slice(&t.pseudo_sum.to_be_bytes());
        let end = t.start + (frame.len() - t.start).min(tcp_len_of(frame, &t));
        complete(&mut frame[..end], t.start, 16);
    }
}

fn tcp_len_of(frame: &[u8], t: &TcpInFrame) -> usize {
    let eth = ETHERNET_HEADER;
    if t.v6 {
        u16::from_be_bytes([frame[eth + 4], frame[eth + 5]]) as usize
    } else {
        let ihl = (frame[eth] & 0x0f) as usize * 4;
        u16::from_be_bytes([frame[eth + 2], frame[eth + 3]]) as usize - ihl
    }
}
