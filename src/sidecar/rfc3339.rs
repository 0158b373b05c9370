//! RFC 3339 timestamps as elastickv writes them in a key's `created`
//! field (Go's `time.RFC3339Nano`), checked on read and made on write.

use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, as RFC 3339 (and Go) write it.
pub fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let num = |r: std::ops::Range<usize>| {
        std::str::from_utf8(&b[r])
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
    };
    if b.len() < 20
        || !(digits(0..4) && digits(5..7) && digits(8..10))
        || !(digits(11..13) && digits(14..16) && digits(17..19))
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let in_range = |r, lo, hi| num(r).is_some_and(|n| (lo..=hi).contains(&n));
    if !(in_range(5..7, 1, 12)
        && in_range(8..10, 1, 31)
        && in_range(11..13, 0, 23)
        && in_range(14..16, 0, 59)
        && in_range(17..19, 0, 60))
    {
        return false;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &rest[1 + n..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// Now, as RFC 3339 UTC with second precision.
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339_from_unix(secs)
}

pub fn rfc3339_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A timestamp's fields, as `parse_rfc3339` reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// The fraction of a second, in nanoseconds (digits past the ninth
    /// are dropped).
    pub nanosecond: u32,
    /// The offset from UTC, in minutes east (`Z` is 0).
    pub offset_minutes: i16,
}

/// The instant a `created` text names: `None` for a text that is not
/// RFC 3339 (see [`is_rfc3339`]), or that names no instant although its
/// shape is right (February 31st, year 0, a leap second `:60`, an offset of 24
/// hours or more). elastickv writes `time.Now().UTC().Format(time.RFC3339)`
/// (applier.go:852, 1399), and never parses it back (sidecar.go:102-109):
/// the field is diagnostic, so its reader accepts the shape alone.
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    if !is_rfc3339(text) {
        return None;
    }
    let b = text.as_bytes();
    let num = |from: usize, to: usize| -> u32 {
        b[from..to]
            .iter()
            .fold(0, |n, d| n * 10 + u32::from(d - b'0'))
    };
    let (year, month, day) = (num(0, 4), num(5, 7), num(8, 10));
    let (hour, minute, second) = (num(11, 13), num(14, 16), num(17, 19));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if year == 0 || day > days_in_month || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanosecond = 0u32;
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        for i in 0..9 {
            let digit = rest.get(1 + i).filter(|_| i < n).map_or(0, |d| d - b'0');
            nanosecond = nanosecond * 10 + u32::from(digit);
        }
        rest = &rest[1 + n..];
    }
    let offset_minutes = match rest {
        [b'+' | b'-', ..] => {
            let at = b.len() - 6;
            let (h, m) = (num(at + 1, at + 3), num(at + 4, at + 6));
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = (h * 60 + m) as i16;
            if rest[0] == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => 0,
    };
    Some(Timestamp {
        year: year as u16,
        month: month as u8,
        day: day as u8,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        nanosecond,
        offset_minutes,
    })
}
