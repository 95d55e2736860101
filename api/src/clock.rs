//! Wall-clock time as an injected dependency: token expiry, rate limits and webhook
//! timestamps read a [`Clock`] (the workspace's one, from `boxoffice-raft`), so tests can
//! set the time with [`ManualClock`]; and the RFC 3339 form every time in the API takes.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The one clock abstraction of the workspace is the replicated inventory's: the API tier
/// reads the same [`Clock`] the storage nodes stamp holds with.
pub use boxoffice_raft::{Clock, ManualClock, SystemClock};

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with second precision,
/// e.g. `2027-06-01T19:00:00Z`, the form every time in the REST API takes. Times past
/// the year 9999 (which RFC 3339 cannot write) read as its last second.
pub fn rfc3339_from_ms(unix_ms: u64) -> String {
    const LAST_SECOND_OF_9999: i64 = 253_402_300_799;
    let secs = i64::try_from(unix_ms / 1000)
        .unwrap_or(i64::MAX)
        .min(LAST_SECOND_OF_9999);
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| "9999-12-31T23:59:59Z".to_owned())
}

/// Parses an RFC 3339 timestamp (`2027-06-01T19:00:00Z`, `2027-06-01T21:00:00.5+02:00`)
/// into milliseconds since the Unix epoch. `None` for anything else and for dates before
/// 1970.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let time = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339_from_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_from_ms(1_811_876_400_999), "2027-06-01T19:00:00Z");
        assert_eq!(rfc3339_from_ms(4_102_444_799_000), "2099-12-31T23:59:59Z");
        // The largest input formats without overflow.
        assert_eq!(rfc3339_from_ms(u64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2027-06-01T19:00:00Z"),
            Some(1_811_876_400_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2027-06-01T21:00:00+02:00"),
            Some(1_811_876_400_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2027-06-01T18:30:00-00:30"),
            Some(1_811_876_400_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2027-06-01T19:00:00.25Z"),
            Some(1_811_876_400_250)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T00:00:00Z"),
            Some(951_782_400_000)
        );
        for bad in [
            "",
            "2027-06-01",
            "2027-06-01T19:00:00",
            "2027-13-01T00:00:00Z",
            "2027-02-29T00:00:00Z",
            "2027-06-01T24:00:00Z",
            "2027-06-01T19:00:00.Z",
            "1969-12-31T23:59:59Z",
            "2027-06-01T19:00:00+2:00",
            "20x7-06-01T19:00:00Z",
            "2027-06-01T19:00:00Zjunk",
            "٢٠٢٧-06-01T19:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
        // Round trip with the formatter.
        for ms in [0, 951_782_400_000, 1_811_876_400_000, 4_102_444_799_000] {
            assert_eq!(parse_rfc3339_ms(&rfc3339_from_ms(ms)), Some(ms));
        }
    }
}
