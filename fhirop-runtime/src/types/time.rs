//! Calendar arithmetic for FHIR dates and instants, in UTC and epoch milliseconds, without a
//! date library: what the lexical rules, `meta.lastUpdated` and date search need.

use std::time::{SystemTime, UNIX_EPOCH};

/// Writes a time as a FHIR `instant` in UTC with milliseconds.
///
/// Digit by digit rather than through `format!`: every stored version and every Bot
/// execution writes instants, and the formatting machinery cost ten times this.
pub fn format_instant(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let mut text = *b"0000-00-00T00:00:00.000Z";
    // Each field at its fixed place; dividing by the constant 10 is a multiplication.
    let fields = [
        (0, 4, year.clamp(0, 9999) as u64),
        (5, 2, u64::from(month)),
        (8, 2, u64::from(day)),
        (11, 2, second_of_day / 3600),
        (14, 2, second_of_day % 3600 / 60),
        (17, 2, second_of_day % 60),
        (20, 3, u64::from(since_epoch.subsec_millis())),
    ];
    for (start, width, mut value) in fields {
        for place in text[start..start + width].iter_mut().rev() {
            *place = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    // ASCII digits and separators only, so the check always passes.
    std::str::from_utf8(&text).unwrap_or_default().to_owned()
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's `civil_from_days`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Whether `year` has a 29th of February.
pub fn is_leap(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

/// The number of days in `month` (1 to 12) of `year`.
pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The range a date or date-time stands for, in epoch milliseconds (both ends inclusive): a
/// year is the whole year, a day the whole day (UTC when no zone is written), an instant its
/// second or millisecond.
pub fn date_range(text: &str) -> Option<(i64, i64)> {
    const DAY: i64 = 86_400_000;
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: Option<i64> = parts.next().map(str::parse).transpose().ok()?;
    let day: Option<i64> = parts.next().map(str::parse).transpose().ok()?;
    let Some(time) = time else {
        return Some(match (month, day) {
            (None, _) => (
                days_from_civil(year, 1, 1) * DAY,
                days_from_civil(year + 1, 1, 1) * DAY - 1,
            ),
            (Some(month), None) => (
                days_from_civil(year, month, 1) * DAY,
                (days_from_civil(year, month, 1) + days_in_month(year, month)) * DAY - 1,
            ),
            (Some(month), Some(day)) => (
                days_from_civil(year, month, day) * DAY,
                (days_from_civil(year, month, day) + 1) * DAY - 1,
            ),
        });
    };
    let zone_at = time.find(['Z', '+', '-']).unwrap_or(time.len());
    let (clock, zone) = time.split_at(zone_at);
    let offset_minutes = match zone {
        "" | "Z" => 0,
        zone => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (hours, minutes) = zone[1..].split_once(':')?;
            sign * (hours.parse::<i64>().ok()? * 60 + minutes.parse::<i64>().ok()?)
        }
    };
    let mut clock_parts = clock.split(':');
    let hours: i64 = clock_parts.next()?.parse().ok()?;
    let minutes: i64 = clock_parts.next()?.parse().ok()?;
    let (seconds, millis, precision) = match clock_parts.next() {
        None => (0, 0, 60_000),
        Some(seconds) => match seconds.split_once('.') {
            None => (seconds.parse::<i64>().ok()?, 0, 1_000),
            Some((whole, fraction)) => {
                let millis = format!("{fraction:0<3}")[..3].parse::<i64>().ok()?;
                (whole.parse::<i64>().ok()?, millis, 1)
            }
        },
    };
    let start = days_from_civil(year, month?, day?) * DAY
        + ((hours * 60 + minutes - offset_minutes) * 60 + seconds) * 1_000
        + millis;
    Some((start, start + precision - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_utc() {
        let time = UNIX_EPOCH + std::time::Duration::from_millis(1_709_251_199_123);
        assert_eq!(format_instant(time), "2024-02-29T23:59:59.123Z");
        assert_eq!(format_instant(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let late = UNIX_EPOCH + std::time::Duration::from_millis(253_402_300_799_999);
        assert_eq!(format_instant(late), "9999-12-31T23:59:59.999Z");
        let padded = UNIX_EPOCH + std::time::Duration::from_millis(1_000_000_000_007);
        assert_eq!(format_instant(padded), "2001-09-09T01:46:40.007Z");
    }

    #[test]
    fn date_ranges_follow_precision_and_zones() {
        let day = date_range("2024-02-29").unwrap();
        assert_eq!(day.1 - day.0 + 1, 86_400_000);
        let year = date_range("2024").unwrap();
        assert_eq!((year.1 - year.0 + 1) / 86_400_000, 366);
        let utc = date_range("2024-01-01T10:00:00Z").unwrap();
        let plus_two = date_range("2024-01-01T12:00:00+02:00").unwrap();
        assert_eq!(utc, plus_two);
        assert_eq!(date_range("2024-01-01T10:00:00.5Z").unwrap().0, utc.0 + 500);
        assert!(date_range("nonsense").is_none());
    }
}
