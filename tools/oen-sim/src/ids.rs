//! Identifiers in Oen's formats.
//!
//! * checkout ids, internal transaction ids and card tokens: 27 ASCII alphanumerics;
//! * transaction numbers: `P` + Taipei date `yyyyMMdd` + 8 uppercase alphanumerics (17 chars).

use chrono::{DateTime, FixedOffset, Offset, Utc};

const ALPHANUMERIC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const UPPER_ALPHANUMERIC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Length of checkout ids, internal transaction ids and tokens.
pub const LONG_ID_LEN: usize = 27;
/// Length of a `P…` transaction number.
pub const TRANSACTION_NUMBER_LEN: usize = 17;

/// Taipei is UTC+8 all year (no daylight saving).
pub fn taipei() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| Utc.fix())
}

fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    // Rejection sampling keeps the distribution uniform over the alphabet.
    let limit = 256 - (256 % alphabet.len());
    while out.len() < len {
        let mut buf = [0u8; 64];
        fill_random(&mut buf);
        for b in buf {
            if (b as usize) < limit {
                out.push(alphabet[b as usize % alphabet.len()] as char);
                if out.len() == len {
                    break;
                }
            }
        }
    }
    out
}

fn fill_random(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        // The OS generator failing is not something a simulator can recover from sensibly;
        // fall back to a time-seeded xorshift so ids stay unique within a run.
        let mut seed = Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64 | 1;
        for b in buf.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
    }
}

/// A fresh 27-character alphanumeric id (checkout id, internal transaction id, token).
pub fn long_id() -> String {
    random_from(ALPHANUMERIC, LONG_ID_LEN)
}

/// A fresh `P…` transaction number dated by `now` in Taipei time.
pub fn transaction_number(now: DateTime<Utc>) -> String {
    let date = now.with_timezone(&taipei()).format("%Y%m%d");
    format!("P{date}{}", random_from(UPPER_ALPHANUMERIC, 8))
}

/// A six-digit authorisation code.
pub fn auth_code() -> String {
    random_from(b"0123456789", 6)
}

/// True when `s` has the shape of a 27-character id.
pub fn is_long_id(s: &str) -> bool {
    s.len() == LONG_ID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// True when `s` has the shape of a `P…` transaction number.
pub fn is_transaction_number(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.len() == TRANSACTION_NUMBER_LEN
        && bytes[0] == b'P'
        && bytes[1..9].iter().all(u8::is_ascii_digit)
        && bytes[9..]
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn long_ids_are_27_alphanumerics_and_differ() {
        let a = long_id();
        let b = long_id();
        assert!(is_long_id(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn transaction_numbers_carry_the_taipei_date() {
        // 2026-09-27 20:00 UTC is already the 28th in Taipei.
        let now = Utc
            .with_ymd_and_hms(2026, 9, 27, 20, 0, 0)
            .single()
            .unwrap_or_default();
        let n = transaction_number(now);
        assert!(n.starts_with("P20260928"), "{n}");
        assert!(is_transaction_number(&n), "{n}");
    }
}
