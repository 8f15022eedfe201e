//! RFC 3339 date-times, as Selvbetjening writes a key's `expiration` and as this crate
//! keeps it in a configuration file (`keyExpiration`): read with or without fractional
//! seconds and offset (none is UTC, as .NET writes them), written in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let yoe = year - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (days since 1970-01-01).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn number(text: &str) -> Option<u32> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Reads `2027-12-01T14:31:28Z`, `2027-12-01T15:31:28.1234567+01:00` or
/// `2027-12-01T14:31:28` (UTC); `None` for anything else.
pub(crate) fn parse(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut parts = date.splitn(3, '-');
    let year = i64::from(number(parts.next()?).filter(|_| date.len() == 10)?);
    let month = number(parts.next()?).filter(|m| (1..=12).contains(m))?;
    let day = number(parts.next()?).filter(|d| (1..=31).contains(d))?;
    // The offset: `Z`, `+HH:MM`, `-HH:MM`, or none (UTC).
    let (clock, offset) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0)
    } else if let Some(at) = time.rfind(['+', '-']) {
        let (hours, minutes) = time[at + 1..].split_once(':')?;
        if hours.len() != 2 || minutes.len() != 2 {
            return None;
        }
        let (hours, minutes) = (number(hours)?, number(minutes)?);
        if hours > 23 || minutes > 59 {
            return None;
        }
        let offset = i64::from(hours * 3600 + minutes * 60);
        (
            &time[..at],
            if &time[at..=at] == "-" {
                -offset
            } else {
                offset
            },
        )
    } else {
        (time, 0)
    };
    let (whole, fraction) = match clock.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (clock, None),
    };
    if fraction.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let mut hms = whole.splitn(3, ':');
    let hour = number(hms.next()?).filter(|h| *h <= 23)?;
    let minute = number(hms.next()?).filter(|m| *m <= 59)?;
    let second = number(hms.next()?).filter(|s| *s <= 60)?;
    let days = days_from_civil(year, month, day);
    if civil_from_days(days) != (year, month, day) {
        return None; // 31 February and the like
    }
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset;
    let seconds = u64::try_from(seconds).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Writes `time` in UTC with whole seconds: `2027-12-01T14:31:28Z`.
pub(crate) fn format(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let rest = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(text: &str) -> Option<u64> {
        parse(text).map(|t| t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs())
    }

    #[test]
    fn reads_the_forms_servers_write() {
        assert_eq!(unix("2027-12-01T14:31:28Z"), Some(1_827_671_488));
        assert_eq!(
            unix("2027-12-01T15:31:28.1234567+01:00"),
            Some(1_827_671_488)
        );
        assert_eq!(unix("2027-12-01T09:31:28-05:00"), Some(1_827_671_488));
        assert_eq!(unix("2027-12-01T14:31:28"), Some(1_827_671_488));
        assert_eq!(unix("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        for bad in [
            "",
            "2027-12-01",
            "2027-13-01T00:00:00Z",
            "2027-02-30T00:00:00Z",
            "2027-12-01T24:00:00Z",
            "2027-12-01T14:31:28+1:00",
            "2027-12-01T14:31:28.Z",
            "27-12-01T14:31:28Z",
            "1969-12-31T23:59:59Z",
            "tomorrow",
        ] {
            assert_eq!(unix(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn writes_utc_and_round_trips() {
        for seconds in [0u64, 1_709_164_800, 1_827_671_488, 4_102_444_799] {
            let time = UNIX_EPOCH + Duration::from_secs(seconds);
            assert_eq!(parse(&format(time)), Some(time), "{}", format(time));
        }
        assert_eq!(
            format(UNIX_EPOCH + Duration::from_secs(1_827_671_488)),
            "2027-12-01T14:31:28Z"
        );
    }
}
