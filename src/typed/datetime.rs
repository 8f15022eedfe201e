//! Date-times as .NET writes them.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A date-time as .NET servers write them: `2024-05-01T12:00:00.1234567+02:00`, with up
/// to seven (or nine) fractional digits, and sometimes without any offset
/// (`2024-05-01T12:00:00.1234567`, a `DateTime` of unspecified kind).
///
/// Every `date-time` in the generated types (`helseid::cpe`, `helseid::cpapi`) is a
/// `DateTimeOffset`, so one value without an offset does not fail a whole response. A
/// value without an offset is read as UTC, and [`has_offset`](Self::has_offset) says so; it is written back the way it
/// came (seven fractional digits, with or without its offset).
///
/// Equality, ordering and hashing are by instant.
///
/// # Example
/// ```
/// use helseid::cpe::DateTimeOffset;
///
/// let with: DateTimeOffset = "2024-05-01T12:00:00.1234567+02:00".parse()?;
/// let without: DateTimeOffset = "2024-05-01T10:00:00.1234567".parse()?;
/// assert_eq!(with, without); // the same instant, read as UTC
/// assert!(!without.has_offset());
/// assert_eq!(with.to_string(), "2024-05-01T12:00:00.1234567+02:00");
/// # Ok::<(), helseid::cpe::ParseDateTimeError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct DateTimeOffset {
    at: DateTime<FixedOffset>,
    has_offset: bool,
}

impl DateTimeOffset {
    /// The instant with its offset (`+00:00` when the text had none).
    pub fn as_datetime(&self) -> DateTime<FixedOffset> {
        self.at
    }

    /// The instant in UTC.
    pub fn to_utc(&self) -> DateTime<Utc> {
        self.at.with_timezone(&Utc)
    }

    /// Whether the text carried an offset (`Z` or `±hh:mm`). Without one, the value was
    /// read as UTC.
    pub fn has_offset(&self) -> bool {
        self.has_offset
    }

    /// The current time, in UTC.
    pub fn now() -> Self {
        Utc::now().into()
    }
}

impl From<DateTime<FixedOffset>> for DateTimeOffset {
    fn from(at: DateTime<FixedOffset>) -> Self {
        DateTimeOffset {
            at,
            has_offset: true,
        }
    }
}

impl From<DateTime<Utc>> for DateTimeOffset {
    fn from(at: DateTime<Utc>) -> Self {
        DateTime::<FixedOffset>::from(at).into()
    }
}

impl From<DateTimeOffset> for DateTime<Utc> {
    fn from(value: DateTimeOffset) -> Self {
        value.to_utc()
    }
}

/// A text that is not a date-time; its [`Display`](fmt::Display) quotes the text (its
/// first 64 characters, control characters escaped).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a date-time such as 2024-05-01T12:00:00.1234567+02:00")]
pub struct ParseDateTimeError {
    text: String,
}

impl FromStr for DateTimeOffset {
    type Err = ParseDateTimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Ok(at.into());
        }
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .map(|naive| DateTimeOffset {
                at: naive.and_utc().fixed_offset(),
                has_offset: false,
            })
            .map_err(|_| ParseDateTimeError {
                // A date-time is never secret; cap what an error message repeats, and
                // escape what would break a log line or a terminal.
                text: crate::text::untrusted(&text.chars().take(64).collect::<String>(), &[]),
            })
    }
}

impl fmt::Display for DateTimeOffset {
    /// Seven fractional digits, as .NET's round-trip format; the offset only when the
    /// value had one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // .NET ticks are 100 ns; chrono has no seven-digit format of its own.
        let ticks = (self.at.timestamp_subsec_nanos() % 1_000_000_000) / 100;
        if self.has_offset {
            let (seconds, offset) = (self.at.format("%Y-%m-%dT%H:%M:%S"), self.at.format("%:z"));
            write!(f, "{seconds}.{ticks:07}{offset}")
        } else {
            let seconds = self.at.naive_utc().format("%Y-%m-%dT%H:%M:%S");
            write!(f, "{seconds}.{ticks:07}")
        }
    }
}

impl PartialEq for DateTimeOffset {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for DateTimeOffset {}

impl PartialOrd for DateTimeOffset {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DateTimeOffset {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

impl Hash for DateTimeOffset {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.at.hash(state);
    }
}

impl Serialize for DateTimeOffset {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DateTimeOffset {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `fuzz_dotnet_datetime`: the text was quoted raw.
    #[test]
    fn an_error_quotes_the_text_escaped() {
        let err = "1\u{85}1\n\u{1b}[31m"
            .parse::<DateTimeOffset>()
            .expect_err("not a date-time");
        let shown = err.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown}");
        assert!(shown.starts_with(r"`1\u{85}1\n\u{1b}[31m`"), "{shown}");
    }

    #[test]
    fn reads_both_dotnet_forms_and_writes_them_back() {
        for text in [
            "2024-05-01T12:00:00.1234567+02:00",
            "2024-05-01T12:00:00.1234567",
            "2024-05-01T12:00:00.0000000Z",
            "2024-12-31T23:59:59.9999999-05:00",
        ] {
            let value: DateTimeOffset = text.parse().unwrap();
            let expected = text.replace('Z', "+00:00");
            assert_eq!(value.to_string(), expected, "{text}");
            assert_eq!(value.has_offset(), text.len() > 27, "{text}");
        }
    }

    #[test]
    fn reads_other_precisions() {
        let value: DateTimeOffset = "2024-05-01T12:00:00".parse().unwrap();
        assert_eq!(value.to_string(), "2024-05-01T12:00:00.0000000");
        let value: DateTimeOffset = "2024-05-01T12:00:00.5+01:00".parse().unwrap();
        assert_eq!(value.to_utc().to_rfc3339(), "2024-05-01T11:00:00.500+00:00");
        let value: DateTimeOffset = "2024-05-01T12:00:00.123456789Z".parse().unwrap();
        assert_eq!(value.as_datetime().timestamp_subsec_nanos(), 123_456_789);
    }

    #[test]
    fn without_offset_is_utc_and_compares_by_instant() {
        let a: DateTimeOffset = "2024-05-01T10:00:00.0000000".parse().unwrap();
        let b: DateTimeOffset = "2024-05-01T12:00:00.0000000+02:00".parse().unwrap();
        let c: DateTimeOffset = "2024-05-01T12:00:00.0000001+02:00".parse().unwrap();
        assert_eq!(a, b);
        assert!(b < c);
        assert_eq!(a.to_utc(), b.to_utc());
    }

    #[test]
    fn rejects_what_is_not_a_date_time() {
        for text in [
            "",
            "yesterday",
            "2024-13-01T00:00:00",
            "2024-05-01",
            "2024-05-01T25:00:00Z",
        ] {
            let e = text.parse::<DateTimeOffset>().unwrap_err();
            assert!(e.to_string().contains(&format!("`{text}`")), "{e}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let json = r#"["2024-05-01T12:00:00.1234567+02:00","2024-05-01T12:00:00.1234567"]"#;
        let values: Vec<DateTimeOffset> = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&values).unwrap(), json);
        let e = serde_json::from_str::<DateTimeOffset>("\"soon\"").unwrap_err();
        assert!(e.to_string().contains("`soon` is not a date-time"), "{e}");
    }
}
