//! `/bytes/N`: a deterministic body of any length, generated on demand, and the `Range` header.
//!
//! Byte `i` of every body is [`bytes_pattern`]`(i)` = `i mod 251`: a prime period, so a range served
//! from the wrong offset (by any multiple of a power of two, a page, a segment) cannot look right.
//!
//! Ranges ([`resolve_range`], RFC 9110 section 14): one range `bytes=a-b`, `bytes=a-` or `bytes=-n` is
//! answered with 206; `b` past the end is clamped to `N-1`; a first position at or past `N`, a suffix
//! `-0`, and any range of an empty body are unsatisfiable (416, `Content-Range: bytes */N`). Anything
//! else is ignored and the full body is sent with 200, as RFC 9110 permits: several ranges (no
//! multipart answers), a syntactically invalid range such as `a>b`, or a unit other than `bytes`.

/// The largest `N` served (1 GiB); larger is answered with 400.
pub(crate) const BYTES_MAX: u64 = 1 << 30;

const PERIOD: usize = 251;

/// One period of the pattern, so filling is slice copies.
const TABLE: [u8; PERIOD] = {
    let mut t = [0u8; PERIOD];
    let mut i = 0;
    while i < PERIOD {
        t[i] = i as u8;
        i += 1;
    }
    t
};

/// The byte at `offset` of every `/bytes/N` body: `offset mod 251`.
pub fn bytes_pattern(offset: u64) -> u8 {
    (offset % PERIOD as u64) as u8
}

/// Fills `buf` with the pattern bytes at `offset`, `offset + 1`, ...
pub(crate) fn fill_bytes_pattern(offset: u64, buf: &mut [u8]) {
    let mut at = (offset % PERIOD as u64) as usize;
    let mut done = 0;
    while done < buf.len() {
        let n = (PERIOD - at).min(buf.len() - done);
        buf[done..done + n].copy_from_slice(&TABLE[at..at + n]);
        done += n;
        at = 0;
    }
}

/// What a request's `Range` header asks of a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    /// 200 with the whole body (no `Range`, or one that is ignored).
    Full,
    /// 206 with the bytes `first..=last`.
    Partial { first: u64, last: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Resolves a `Range` header value against a body of `len` bytes (see the module doc).
pub(crate) fn resolve_range(header: Option<&[u8]>, len: u64) -> RangeAnswer {
    let Some(value) = header.and_then(|h| std::str::from_utf8(h).ok()) else {
        return RangeAnswer::Full;
    };
    let Some((unit, set)) = value.trim().split_once('=') else {
        return RangeAnswer::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeAnswer::Full;
    }
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeAnswer::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix: the last `n` bytes.
        return match digits(last) {
            None => RangeAnswer::Full,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial {
                first: len - n.min(len),
                last: len - 1,
            },
        };
    }
    let Some(first) = digits(first) else {
        return RangeAnswer::Full;
    };
    let last = if last.is_empty() {
        u64::MAX
    } else {
        match digits(last) {
            Some(l) if l >= first => l,
            _ => return RangeAnswer::Full,
        }
    };
    if first >= len {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial {
        first,
        last: last.min(len - 1),
    }
}

/// A non-empty run of ASCII digits; values past `u64::MAX` saturate (they are past any end anyway).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(h: &str, len: u64) -> RangeAnswer {
        resolve_range(Some(h.as_bytes()), len)
    }

    fn part(first: u64, last: u64) -> RangeAnswer {
        RangeAnswer::Partial { first, last }
    }

    #[test]
    fn test_pattern_is_offset_mod_251() {
        assert_eq!(bytes_pattern(0), 0);
        assert_eq!(bytes_pattern(250), 250);
        assert_eq!(bytes_pattern(251), 0);
        assert_eq!(bytes_pattern(BYTES_MAX - 1), ((BYTES_MAX - 1) % 251) as u8);
    }

    #[test]
    fn test_fill_matches_pattern_at_any_offset() {
        for offset in [0u64, 1, 250, 251, 1000, BYTES_MAX - 700] {
            let mut buf = vec![0u8; 700];
            fill_bytes_pattern(offset, &mut buf);
            for (i, b) in buf.iter().enumerate() {
                assert_eq!(*b, bytes_pattern(offset + i as u64));
            }
        }
        fill_bytes_pattern(5, &mut []);
    }

    #[test]
    fn test_single_range_forms() {
        assert_eq!(r("bytes=0-99", 1000), part(0, 99));
        assert_eq!(r("bytes=10-", 1000), part(10, 999));
        assert_eq!(r("bytes=-100", 1000), part(900, 999));
        assert_eq!(r("bytes=5-5", 1000), part(5, 5));
        assert_eq!(r(" Bytes = 1 - 2 ", 1000), part(1, 2));
        assert_eq!(resolve_range(None, 1000), RangeAnswer::Full);
    }

    #[test]
    fn test_end_past_length_clamps() {
        assert_eq!(r("bytes=900-5000", 1000), part(900, 999));
        assert_eq!(r("bytes=0-99999999999999999999999", 10), part(0, 9));
        assert_eq!(r("bytes=-5000", 1000), part(0, 999));
    }

    #[test]
    fn test_unsatisfiable_ranges() {
        assert_eq!(r("bytes=1000-", 1000), RangeAnswer::Unsatisfiable);
        assert_eq!(r("bytes=1000-2000", 1000), RangeAnswer::Unsatisfiable);
        assert_eq!(r("bytes=-0", 1000), RangeAnswer::Unsatisfiable);
        assert_eq!(r("bytes=0-0", 0), RangeAnswer::Unsatisfiable);
        assert_eq!(r("bytes=-1", 0), RangeAnswer::Unsatisfiable);
        assert_eq!(
            r("bytes=99999999999999999999999-", 10),
            RangeAnswer::Unsatisfiable
        );
    }

    #[test]
    fn test_ignored_ranges_get_full_body() {
        assert_eq!(r("bytes=5-3", 1000), RangeAnswer::Full, "a > b is invalid");
        assert_eq!(
            r("bytes=0-1,5-6", 1000),
            RangeAnswer::Full,
            "multiple ranges"
        );
        assert_eq!(r("items=0-1", 1000), RangeAnswer::Full);
        assert_eq!(r("bytes=x-1", 1000), RangeAnswer::Full);
        assert_eq!(r("bytes=-", 1000), RangeAnswer::Full);
        assert_eq!(r("bytes=", 1000), RangeAnswer::Full);
        assert_eq!(r("bytes=1", 1000), RangeAnswer::Full);
        assert_eq!(r("bytes=+1-2", 1000), RangeAnswer::Full);
        assert_eq!(
            resolve_range(Some(b"bytes=\xff-1"), 1000),
            RangeAnswer::Full
        );
    }
}
