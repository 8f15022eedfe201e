//! Date-times as .NET reads and writes them, for the CPE API: 100-nanosecond ticks, up
//! to seven fractional digits with trailing zeros trimmed, and an offset or none (UTC);
//! and Norwegian time, in which the register writes its date-times.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Offset, Timelike, Utc, Weekday};

/// 100-nanosecond ticks (the .NET unit) per second.
pub(crate) const TICKS_PER_SECOND: i64 = 10_000_000;

/// An instant from ticks since the Unix epoch.
pub(crate) fn instant(ticks: i64) -> DateTime<Utc> {
    let nanos = u32::try_from(ticks.rem_euclid(TICKS_PER_SECOND) * 100).unwrap_or_default();
    DateTime::from_timestamp(ticks.div_euclid(TICKS_PER_SECOND), nanos).unwrap_or_default()
}

/// An instant in ticks since the Unix epoch (finer digits dropped).
pub(crate) fn to_ticks(at: DateTime<Utc>) -> i64 {
    at.timestamp()
        .saturating_mul(TICKS_PER_SECOND)
        .saturating_add(i64::from(
            at.timestamp_subsec_nanos().min(999_999_999) / 100,
        ))
}

/// The last Sunday of a month, or `None` for an impossible date.
fn last_sunday(year: i32, month: u32) -> Option<NaiveDate> {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let mut day = NaiveDate::from_ymd_opt(next_year, next_month, 1)?.pred_opt()?;
    while day.weekday() != Weekday::Sun {
        day = day.pred_opt()?;
    }
    Some(day)
}

/// Norway's offset at `at`: `+02:00` in summer time (from 01:00 UTC on the last Sunday
/// of March to 01:00 UTC on the last Sunday of October), `+01:00` otherwise.
fn oslo_offset(at: DateTime<Utc>) -> FixedOffset {
    let switch = |month| {
        last_sunday(at.year(), month)
            .and_then(|day| day.and_hms_opt(1, 0, 0))
            .map(|time| time.and_utc())
    };
    let summer = match (switch(3), switch(10)) {
        (Some(start), Some(end)) => at >= start && at < end,
        _ => false,
    };
    FixedOffset::east_opt(if summer { 7200 } else { 3600 }).unwrap_or(Utc.fix())
}

/// Midnight, Norwegian time, of the day `at` falls on in Norway.
pub(crate) fn local_midnight(at: DateTime<Utc>) -> DateTime<Utc> {
    let offset = oslo_offset(at);
    let local = at.with_timezone(&offset);
    local
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .and_then(|midnight| midnight.and_local_timezone(offset).single())
        .map_or(at, |midnight| midnight.with_timezone(&Utc))
}

/// Writes an instant the way .NET writes a `DateTimeOffset`: `2025-05-01T12:00:00.1234567+02:00`,
/// with at most seven fractional digits (trailing zeros trimmed, no dot when there are
/// none). With `offset`, in Norwegian time with its offset; without, as the UTC
/// wall-clock time with no offset (`2025-05-01T10:00:00.1234567`).
pub(crate) fn write_dotnet(at: DateTime<Utc>, offset: bool) -> String {
    let (local, suffix) = if offset {
        let offset = oslo_offset(at);
        (at.with_timezone(&offset).naive_local(), offset.to_string())
    } else {
        (at.naive_utc(), String::new())
    };
    let mut written = local.format("%Y-%m-%dT%H:%M:%S").to_string();
    let ticks = local.nanosecond().min(999_999_999) / 100;
    if ticks != 0 {
        let fraction = format!("{ticks:07}");
        written.push('.');
        written.push_str(fraction.trim_end_matches('0'));
    }
    written.push_str(&suffix);
    written
}

/// Reads a date-time the way the CPE API accepts one: `YYYY-MM-DDTHH:MM:SS`, then up to
/// seven fractional digits after a dot, then `Z`, an offset `+HH:MM`/`-HH:MM`, or nothing
/// (read as UTC).
///
/// # Errors
/// What is wrong, to follow the parameter's name and value in a message.
pub(crate) fn parse_dotnet(value: &str) -> Result<DateTime<Utc>, String> {
    const EXPECTED: &str = "a date-time such as 2025-05-01T12:00:00.1234567+02:00 (with an offset, or \
         without one for UTC)";
    let bytes = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = bytes.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let shape = bytes.len() >= 19
        && bytes.get(4) == Some(&b'-')
        && bytes.get(7) == Some(&b'-')
        && bytes.get(13) == Some(&b':')
        && bytes.get(16) == Some(&b':');
    let fields = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    );
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = fields
    else {
        return Err(format!("is not {EXPECTED}"));
    };
    if !shape {
        return Err(format!("is not {EXPECTED}"));
    }
    match bytes.get(10) {
        Some(b'T') => {}
        Some(b' ') => return Err("has a space between date and time; use `T`".to_owned()),
        _ => return Err(format!("is not {EXPECTED}")),
    }
    let date = i32::try_from(year)
        .ok()
        .and_then(|year| NaiveDate::from_ymd_opt(year, month, day))
        .ok_or_else(|| "is not a date in the calendar".to_owned())?;

    let mut rest = value.get(19..).unwrap_or_default();
    let mut nanos = 0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let count = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if count == 0 {
            return Err("has a dot but no fractional digits after the seconds".to_owned());
        }
        if count > 7 {
            return Err(format!(
                "has {count} fractional digits; at most seven (100 ns) are allowed"
            ));
        }
        let (fraction, tail) = after_dot.split_at(count);
        let ticks: u32 = format!("{fraction:0<7}").parse().unwrap_or_default();
        nanos = ticks * 100;
        rest = tail;
    }
    let time = date
        .and_hms_nano_opt(hour, minute, second, nanos)
        .filter(|_| second < 60)
        .ok_or_else(|| "is not a time of day".to_owned())?;
    let offset_seconds = match rest.as_bytes() {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let field = |a: u8, b: u8| -> Option<i32> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i32::from(a - b'0') * 10 + i32::from(b - b'0'))
            };
            let (Some(hours), Some(minutes)) = (field(*h1, *h2), field(*m1, *m2)) else {
                return Err(format!("has a malformed offset; {EXPECTED}"));
            };
            if hours > 14 || minutes > 59 || (hours == 14 && minutes > 0) {
                return Err("has an offset beyond ±14:00".to_owned());
            }
            let seconds = (hours * 60 + minutes) * 60;
            if *sign == b'-' { -seconds } else { seconds }
        }
        [b' ', _, _, b':', _, _] => {
            return Err(
                "has a space where its offset's `+` should be: URL-encode `+` as `%2B`".to_owned(),
            );
        }
        _ => {
            return Err(format!(
                "ends in something that is not an offset; {EXPECTED}"
            ));
        }
    };
    let offset = FixedOffset::east_opt(offset_seconds)
        .ok_or_else(|| "has an offset beyond ±14:00".to_owned())?;
    time.and_local_timezone(offset)
        .single()
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| "is not a representable instant".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotnet_date_times_are_read_strictly() {
        let utc = |s: &str| parse_dotnet(s).map(|at| at.to_rfc3339());
        assert_eq!(
            utc("2025-05-01T12:00:00.1234567+02:00"),
            Ok("2025-05-01T10:00:00.123456700+00:00".to_owned())
        );
        assert_eq!(
            utc("2025-05-01T12:00:00"),
            Ok("2025-05-01T12:00:00+00:00".to_owned())
        );
        assert_eq!(
            utc("2025-05-01T12:00:00.5Z"),
            Ok("2025-05-01T12:00:00.500+00:00".to_owned())
        );
        assert_eq!(
            utc("2025-05-01T12:00:00-03:30"),
            Ok("2025-05-01T15:30:00+00:00".to_owned())
        );
        for (bad, fragment) in [
            ("2025-05-01T12:00:00.12345678+02:00", "8 fractional digits"),
            ("2025-05-01T12:00:00 02:00", "URL-encode"),
            ("2025-05-01 12:00:00", "space between date and time"),
            ("2025-02-30T12:00:00", "not a date in the calendar"),
            ("2025-05-01T24:00:00", "not a time of day"),
            ("2025-05-01T12:00:60", "not a time of day"),
            ("2025-05-01T12:00:00+15:00", "beyond"),
            ("2025-05-01T12:00:00.", "no fractional digits"),
            ("2025-05-01T12:00:00+0200", "not an offset"),
            ("2025-05-01", "is not a date-time"),
            ("yesterday", "is not a date-time"),
            ("", "is not a date-time"),
            ("2025-05-01T12:00:00Zulu", "not an offset"),
            ("２０２５-05-01T12:00:00", "is not a date-time"),
        ] {
            let error = parse_dotnet(bad).expect_err(bad);
            assert!(error.contains(fragment), "{bad}: {error}");
        }
    }

    proptest::proptest! {
        /// Anything at all: no panic, and a reason without a control character.
        #[test]
        fn fuzz_parse_dotnet(value in proptest::prop_oneof![
            "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,9})?(Z|[+ -][0-9]{2}:?[0-9]{2}|.)?",
            ".*",
        ]) {
            if let Err(reason) = parse_dotnet(&value) {
                proptest::prop_assert!(!reason.chars().any(char::is_control), "{:?}", reason);
            }
        }

        /// What the emulator writes, it reads back as the same instant.
        #[test]
        fn fuzz_dotnet_round_trip(ticks in -62_135_596_800i64 * TICKS_PER_SECOND..253_402_300_799 * TICKS_PER_SECOND, offset: bool) {
            let at = instant(ticks);
            let written = write_dotnet(at, offset);
            proptest::prop_assert_eq!(parse_dotnet(&written), Ok(at), "{}", written);
        }
    }
}
