//! String formats checked by the validator, written by hand (no regex crate) and
//! deliberately shaped after what the Azure Backup service actually sends.

/// RFC 3339 date-time, leniently: the fraction may have 1–7 digits (.NET's
/// `DateTime` precision: the service sends `2018-05-28T08:33:14.7304852Z`) and the
/// `Z`/offset may be missing (the service sometimes serializes unspecified-kind
/// `DateTime`s). More than 7 digits is rejected on purpose: the real service
/// never sends it, so a simulator that does (e.g. chrono's nanosecond output) is
/// drifting from what clients see.
pub(crate) fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 19 || !matches!(b[10], b'T' | b't') {
        return false;
    }
    if !is_date_bytes(&b[..10]) {
        return false;
    }
    let (Some(hour), Some(minute), Some(second)) = (num(b, 11, 2), num(b, 14, 2), num(b, 17, 2)) else {
        return false;
    };
    if b[13] != b':' || b[16] != b':' || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=7).contains(&digits) {
            return false;
        }
        i += 1 + digits;
    }
    match b.get(i) {
        None => true,
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            b.len() == i + 6 && b[i + 3] == b':' && num(b, i + 1, 2).is_some_and(|h| h <= 23) && num(b, i + 4, 2).is_some_and(|m| m <= 59)
        }
        Some(_) => false,
    }
}

/// `YYYY-MM-DD` naming a real calendar day (chrono knows leap years).
pub(crate) fn is_date(s: &str) -> bool {
    is_date_bytes(s.as_bytes())
}

fn is_date_bytes(b: &[u8]) -> bool {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    match (num(b, 0, 4), num(b, 5, 2), num(b, 8, 2)) {
        (Some(y), Some(m), Some(d)) => i32::try_from(y).ok().and_then(|y| chrono::NaiveDate::from_ymd_opt(y, m, d)).is_some(),
        _ => false,
    }
}

/// ISO 8601 duration as produced by .NET's `XmlConvert.ToString(TimeSpan)`:
/// `P[nY][nM][nW][nD][T[nH][nM][n[.f]S]]`, at least one component, a `T` only if
/// a time component follows, an optional leading `-`; a decimal fraction is only
/// allowed on the last component (ISO 8601 rule). Examples: `PT9.8782791S`,
/// `P1D`, `PT0S`.
pub(crate) fn is_duration(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let Some(rest) = s.strip_prefix('P') else {
        return false;
    };
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut fraction_seen = false;
    let Some(date_components) = components(date, b"YMWD", &mut fraction_seen) else {
        return false;
    };
    let time_components = match time {
        None => 0,
        // A `T` must be followed by at least one time component.
        Some(t) => match components(t, b"HMS", &mut fraction_seen) {
            Some(n) if n > 0 => n,
            _ => return false,
        },
    };
    date_components + time_components > 0
}

/// Count the `<number><unit>` components of one half of a duration, `None` if
/// malformed. `units` lists the allowed units in their mandatory order.
fn components(part: &str, units: &[u8], fraction_seen: &mut bool) -> Option<usize> {
    let b = part.as_bytes();
    let mut i = 0;
    let mut next_unit = 0;
    let mut count = 0;
    while i < b.len() {
        if *fraction_seen {
            return None; // a fractional component must be the last one
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        if i < b.len() && matches!(b[i], b'.' | b',') {
            let frac_start = i + 1;
            i = frac_start;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == frac_start {
                return None;
            }
            *fraction_seen = true;
        }
        let unit = *b.get(i)?;
        // Unknown, repeated or out-of-order units are all "not found after
        // the previous unit".
        let pos = units.get(next_unit..)?.iter().position(|&u| u == unit)?;
        next_unit += pos + 1;
        i += 1;
        count += 1;
    }
    Some(count)
}

/// UUID in the 8-4-4-4-12 hex form, case-insensitive, optionally in braces. The
/// version/variant bits are not checked: the brief asks for a loose check and
/// Azure's own examples use all-zero ids.
pub(crate) fn is_uuid(s: &str) -> bool {
    let s = s.strip_prefix('{').and_then(|t| t.strip_suffix('}')).unwrap_or(s);
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Parse `len` ASCII digits at `at`, `None` if out of range or not digits.
fn num(b: &[u8], at: usize, len: usize) -> Option<u32> {
    let digits = b.get(at..at.checked_add(len)?)?;
    digits.iter().try_fold(0u32, |acc, c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_the_service_sends_are_accepted() {
        for s in [
            "2018-05-28T08:33:14.7304852Z",
            "0001-01-01T00:00:00Z",
            "2018-05-28T11:43:21Z",
            "2018-05-28T11:43:21.6Z",
            "2018-05-28T11:43:21.6516182",
            "2018-05-28T11:43:21",
            "2018-05-28T11:43:21+05:30",
            "2018-05-28T11:43:21.123-08:00",
            "2024-02-29T00:00:00Z",
        ] {
            assert!(is_date_time(s), "{s}");
        }
    }

    #[test]
    fn malformed_date_times_are_rejected() {
        for s in [
            "",
            "yesterday",
            "2018-05-28",
            "2018-05-28 08:33:14Z",
            "2018-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2018-05-28T24:00:00Z",
            "2018-05-28T08:60:00Z",
            "2018-05-28T08:33:14.Z",
            "2018-05-28T08:33:14.12345678Z",
            "2018-05-28T08:33:14ZZ",
            "2018-05-28T08:33:14+0530",
            "2018-05-28T08:33:14+05:30x",
            "2018-05-28T08:33:1éZ",
            "Mon, 28 May 2018 07:55:16 GMT",
        ] {
            assert!(!is_date_time(s), "{s}");
        }
    }

    #[test]
    fn durations() {
        for s in ["PT9.8782791S", "P1D", "PT0S", "P1Y2M3W4DT5H6M7S", "PT1H", "P0D", "-PT1S", "PT1,5S"] {
            assert!(is_duration(s), "{s}");
        }
        for s in
            ["", "P", "PT", "P1DT", "9.87s", "00:00:09.8782791", "PT1.5H30M", "PT5M1H", "P1S", "PT1D", "P1D1D", "PTS", "PT.5S", "PT1.S"]
        {
            assert!(!is_duration(s), "{s}");
        }
    }

    #[test]
    fn uuids() {
        assert!(is_uuid("c22eca5d-0c1c-48a0-a40d-69bef708d92a"));
        assert!(is_uuid("{C22ECA5D-0C1C-48A0-A40D-69BEF708D92A}"));
        assert!(!is_uuid("c22eca5d0c1c48a0a40d69bef708d92a"));
        assert!(!is_uuid("c22eca5d-0c1c-48a0-a40d-69bef708d92g"));
    }
}
