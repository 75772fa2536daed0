//! Daytime (RFC 867): one human-readable line with the date and time (UTC), then close.
//!
//! Also home of the calendar arithmetic the HTTP `Date` header uses: no date crate, just
//! [`civil_from_days`].

use super::fixed::{copy_prefix, FixedReply};
use super::time::unix_seconds;
use super::{Context, DatagramService};
use std::net::SocketAddr;
use std::time::SystemTime;

pub(crate) const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

pub(crate) const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The proleptic Gregorian date of `days` since 1970-01-01, as (year, month 1..=12, day 1..=31).
///
/// Howard Hinnant's `civil_from_days`: shift to eras of 400 years starting on March 1st, so that the
/// leap day is the last day of the shifted year.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A wall-clock instant broken down in UTC, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UtcDateTime {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday .. 6 = Saturday
    pub weekday: u32,
}

impl UtcDateTime {
    pub(crate) fn from_system_time(wall: SystemTime) -> Self {
        let secs = unix_seconds(wall);
        let days = secs.div_euclid(86_400);
        let tod = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        UtcDateTime {
            year,
            month,
            day,
            hour: tod / 3_600,
            minute: tod / 60 % 60,
            second: tod % 60,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
        }
    }

    pub(crate) fn weekday_name(&self) -> &'static str {
        WEEKDAYS[self.weekday as usize]
    }

    pub(crate) fn month_name(&self) -> &'static str {
        MONTHS[self.month as usize - 1]
    }
}

/// The daytime line: `Monday, January 1, 2024 00:00:00-UTC\r\n` (the format RFC 867 shows as an example).
pub(crate) fn daytime_line(wall: SystemTime) -> String {
    let t = UtcDateTime::from_system_time(wall);
    format!(
        "{}, {} {}, {} {:02}:{:02}:{:02}-UTC\r\n",
        t.weekday_name(),
        t.month_name(),
        t.day,
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

/// Sends the line as of the moment of connection, ignores input, then closes.
pub(crate) fn session(cx: &Context) -> FixedReply {
    FixedReply::new(daytime_line(cx.wall).into_bytes())
}

/// Answers any datagram with the line (cut to `out` if the transport offers less room).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DaytimeDatagram;

impl DaytimeDatagram {
    pub(crate) fn new() -> Self {
        DaytimeDatagram
    }
}

impl DatagramService for DaytimeDatagram {
    fn handle_datagram(
        &mut self,
        cx: &Context,
        _from: SocketAddr,
        _request: &[u8],
        out: &mut [u8],
    ) -> Option<usize> {
        Some(copy_prefix(daytime_line(cx.wall).as_bytes(), out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{cx, drain, settings};
    use crate::service::StreamSession;
    use crate::status::Status;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn test_civil_from_days_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(
            civil_from_days(-25_508),
            (1900, 3, 1),
            "1900 has no leap day"
        );
    }

    #[test]
    fn test_line_for_2024_new_year() {
        assert_eq!(
            daytime_line(at(1_704_067_200)),
            "Monday, January 1, 2024 00:00:00-UTC\r\n"
        );
    }

    #[test]
    fn test_line_for_leap_day() {
        // 2024-02-29T23:59:59Z
        assert_eq!(
            daytime_line(at(1_709_251_199)),
            "Thursday, February 29, 2024 23:59:59-UTC\r\n"
        );
        assert_eq!(
            daytime_line(at(1_709_251_200)),
            "Friday, March 1, 2024 00:00:00-UTC\r\n"
        );
    }

    #[test]
    fn test_line_for_unix_epoch_and_before() {
        assert_eq!(
            daytime_line(UNIX_EPOCH),
            "Thursday, January 1, 1970 00:00:00-UTC\r\n"
        );
        assert_eq!(
            daytime_line(UNIX_EPOCH - Duration::from_millis(500)),
            "Wednesday, December 31, 1969 23:59:59-UTC\r\n"
        );
    }

    #[test]
    fn test_session_sends_line_then_finishes() {
        let (st, se) = (Status::default(), settings());
        let c = cx(90_061_000, &st, &se); // one day, one hour, one minute, one second in
        let mut s = session(&c);
        assert!(!s.is_finished());
        assert_eq!(s.handle_input(&c, b"hi"), 2);
        let out = drain(&mut s, &c, 5, usize::MAX);
        assert_eq!(out, b"Tuesday, January 2, 2024 01:01:01-UTC\r\n");
        assert!(s.is_finished());
    }

    #[test]
    fn test_datagram_replies_with_line() {
        let (st, se) = (Status::default(), settings());
        let c = cx(0, &st, &se);
        let from = "192.168.69.100:5000".parse().unwrap();
        let mut out = [0u8; 512];
        let n = DaytimeDatagram::new()
            .handle_datagram(&c, from, b"", &mut out)
            .unwrap();
        assert_eq!(&out[..n], b"Monday, January 1, 2024 00:00:00-UTC\r\n");
    }
}
