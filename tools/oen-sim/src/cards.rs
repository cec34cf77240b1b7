//! Test card numbers. The card a token was bound with decides how charges of that token
//! behave (and, for a few cards, how the binding itself behaves). Any other number of 12 to
//! 19 digits behaves like [`SUCCESS`].
//!
//! The table in `tools/oen-sim/README.md` lists the same numbers.

/// Binds, and every charge succeeds (`charged`, HTTP 200 `S0000`).
pub const SUCCESS: &str = "4242424242424242";

/// Binds; charges are declined with `T0001` (general failure, soft decline).
pub const DECLINE_T0001_GENERAL: &str = "4000000000000001";
/// Binds; charges are declined with `T0002` (CVV error, hard decline).
pub const DECLINE_T0002_CVV: &str = "4000000000000002";
/// Binds; charges are declined with `T0003` (card expired, hard decline).
pub const DECLINE_T0003_EXPIRED: &str = "4000000000000003";
/// Binds; charges are declined with `T0004` (insufficient funds, soft decline).
pub const DECLINE_T0004_INSUFFICIENT_FUNDS: &str = "4000000000000004";
/// Binds; charges are declined with `T0005` (issuer refused, hard decline).
pub const DECLINE_T0005_ISSUER_REFUSED: &str = "4000000000000005";

/// Binds; charges answer 409 `C026` with the transaction `charging`, which turns `charged`
/// after the settle delay (simulator clock) or on `POST /_sim/settle`.
pub const UNKNOWN_C026_THEN_CHARGED: &str = "4000000000000260";
/// Like [`UNKNOWN_C026_THEN_CHARGED`] but the transaction later turns `failed` (`T0001`).
pub const UNKNOWN_C026_THEN_FAILED: &str = "4000000000000261";
/// Binds; each charge is committed (`charged`) and then answered 504 after the gateway
/// timeout delay.
pub const GATEWAY_TIMEOUT_AFTER_COMMIT: &str = "4000000000000504";
/// Binds; each charge is committed (`charged`) and then the connection is closed without a
/// response.
pub const CONNECTION_DROP_AFTER_COMMIT: &str = "4000000000000999";

/// Prefix of the "succeeds after N failures" family: `400000000000100N` (N = 1..=9). The first
/// N charges of a token bound with such a card are declined `T0001`, later ones succeed.
pub const SUCCEEDS_AFTER_FAILURES_PREFIX: &str = "400000000000100";

/// The card number whose tokens fail their first `n` charges (`T0001`) and then succeed.
/// `n` is clamped to 1..=9.
pub fn succeeds_after_failures(n: u8) -> String {
    format!("{SUCCEEDS_AFTER_FAILURES_PREFIX}{}", n.clamp(1, 9))
}

/// The binding fails: 3-D Secure was abandoned. The webhook says `success: false`,
/// `message: "3DS_ABANDONED"`; the browser goes to `failureUrl?payment_error=T0001`.
pub const ABANDONED_3DS: &str = "4000000000003220";

/// The binding itself is declined with `T0001`: webhook `success: false`, `message: "T0001"`,
/// browser to `failureUrl?payment_error=T0001`.
pub const BIND_DECLINE_T0001: &str = "4100000000000001";
/// Binding declined with `T0002`.
pub const BIND_DECLINE_T0002: &str = "4100000000000002";
/// Binding declined with `T0003`.
pub const BIND_DECLINE_T0003: &str = "4100000000000003";
/// Binding declined with `T0004`.
pub const BIND_DECLINE_T0004: &str = "4100000000000004";
/// Binding declined with `T0005`.
pub const BIND_DECLINE_T0005: &str = "4100000000000005";

/// A test card as a person reads it: the number to type and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCard {
    pub number: String,
    /// What binding it on the hosted page does.
    pub binding: &'static str,
    /// What charging its token does; `None` when it never binds.
    pub charging: Option<&'static str>,
}

/// Every test card with what it does, in the order the hosted page and the dev stack list them.
pub fn catalog() -> Vec<TestCard> {
    let binds = |number: &str, charging: &'static str| TestCard {
        number: number.to_owned(),
        binding: "binds",
        charging: Some(charging),
    };
    let fails = |number: &str, binding: &'static str| TestCard {
        number: number.to_owned(),
        binding,
        charging: None,
    };
    vec![
        binds(SUCCESS, "charged"),
        binds(DECLINE_T0001_GENERAL, "declined T0001 (soft)"),
        binds(DECLINE_T0002_CVV, "declined T0002 CVV (hard)"),
        binds(DECLINE_T0003_EXPIRED, "declined T0003 expired (hard)"),
        binds(
            DECLINE_T0004_INSUFFICIENT_FUNDS,
            "declined T0004 insufficient funds (soft)",
        ),
        binds(
            DECLINE_T0005_ISSUER_REFUSED,
            "declined T0005 issuer refused (hard)",
        ),
        binds(
            UNKNOWN_C026_THEN_CHARGED,
            "409 C026 result unknown, later charged",
        ),
        binds(
            UNKNOWN_C026_THEN_FAILED,
            "409 C026 result unknown, later failed",
        ),
        binds(GATEWAY_TIMEOUT_AFTER_COMMIT, "charged, but answered 504"),
        binds(
            CONNECTION_DROP_AFTER_COMMIT,
            "charged, but the connection drops",
        ),
        binds(
            &succeeds_after_failures(2),
            "first 2 charges declined T0001, then charged",
        ),
        fails(
            ABANDONED_3DS,
            "fails: 3DS_ABANDONED (browser gets payment_error=T0001)",
        ),
        fails(BIND_DECLINE_T0001, "fails: T0001"),
        fails(BIND_DECLINE_T0002, "fails: T0002"),
        fails(BIND_DECLINE_T0003, "fails: T0003"),
        fails(BIND_DECLINE_T0004, "fails: T0004"),
        fails(BIND_DECLINE_T0005, "fails: T0005"),
    ]
}

/// What a card does, at binding and at charging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CardBehaviour {
    Approve,
    Decline(&'static str),
    UnknownThenCharged,
    UnknownThenFailed,
    GatewayTimeoutAfterCommit,
    DropAfterCommit,
    SucceedsAfter(u32),
    BindAbandoned3ds,
    BindDecline(&'static str),
}

/// Keeps only the digits of what a person typed (spaces and dashes are common).
pub(crate) fn normalize(card_number: &str) -> String {
    card_number.chars().filter(char::is_ascii_digit).collect()
}

/// True when a typed card number is plausible: only digits, spaces and dashes, 12–19 digits.
pub(crate) fn is_plausible(card_number: &str) -> bool {
    let digits = normalize(card_number);
    card_number
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
        && (12..=19).contains(&digits.len())
}

pub(crate) fn behaviour_of(card_number: &str) -> CardBehaviour {
    let digits = normalize(card_number);
    match digits.as_str() {
        DECLINE_T0001_GENERAL => CardBehaviour::Decline("T0001"),
        DECLINE_T0002_CVV => CardBehaviour::Decline("T0002"),
        DECLINE_T0003_EXPIRED => CardBehaviour::Decline("T0003"),
        DECLINE_T0004_INSUFFICIENT_FUNDS => CardBehaviour::Decline("T0004"),
        DECLINE_T0005_ISSUER_REFUSED => CardBehaviour::Decline("T0005"),
        UNKNOWN_C026_THEN_CHARGED => CardBehaviour::UnknownThenCharged,
        UNKNOWN_C026_THEN_FAILED => CardBehaviour::UnknownThenFailed,
        GATEWAY_TIMEOUT_AFTER_COMMIT => CardBehaviour::GatewayTimeoutAfterCommit,
        CONNECTION_DROP_AFTER_COMMIT => CardBehaviour::DropAfterCommit,
        ABANDONED_3DS => CardBehaviour::BindAbandoned3ds,
        BIND_DECLINE_T0001 => CardBehaviour::BindDecline("T0001"),
        BIND_DECLINE_T0002 => CardBehaviour::BindDecline("T0002"),
        BIND_DECLINE_T0003 => CardBehaviour::BindDecline("T0003"),
        BIND_DECLINE_T0004 => CardBehaviour::BindDecline("T0004"),
        BIND_DECLINE_T0005 => CardBehaviour::BindDecline("T0005"),
        other => match other.strip_prefix(SUCCEEDS_AFTER_FAILURES_PREFIX) {
            Some(n) if n.len() == 1 => match n.parse::<u32>() {
                Ok(n) if n >= 1 => CardBehaviour::SucceedsAfter(n),
                _ => CardBehaviour::Approve,
            },
            _ => CardBehaviour::Approve,
        },
    }
}

/// The last four digits, as Oen's webhook `paymentInfo` carries them.
pub(crate) fn last4(card_number: &str) -> String {
    let digits = normalize(card_number);
    let start = digits.len().saturating_sub(4);
    digits[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_digit_picks_the_number_of_failures() {
        assert_eq!(
            behaviour_of(&succeeds_after_failures(3)),
            CardBehaviour::SucceedsAfter(3)
        );
        assert_eq!(succeeds_after_failures(3).len(), 16);
    }

    #[test]
    fn the_catalog_says_what_each_card_does() {
        let catalog = catalog();
        for card in &catalog {
            assert!(is_plausible(&card.number), "{}", card.number);
            let binds = !matches!(
                behaviour_of(&card.number),
                CardBehaviour::BindAbandoned3ds | CardBehaviour::BindDecline(_)
            );
            assert_eq!(card.charging.is_some(), binds, "{}", card.number);
            let hard = matches!(
                behaviour_of(&card.number),
                CardBehaviour::Decline("T0002" | "T0003" | "T0005")
            );
            assert_eq!(
                card.charging.is_some_and(|c| c.contains("(hard)")),
                hard,
                "{}",
                card.number
            );
        }
        let mut numbers: Vec<&str> = catalog.iter().map(|c| c.number.as_str()).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), catalog.len(), "no card is listed twice");
    }

    #[test]
    fn spaces_are_ignored_and_unknown_cards_approve() {
        assert_eq!(
            behaviour_of("4000 0000 0000 0004"),
            CardBehaviour::Decline("T0004")
        );
        assert_eq!(behaviour_of("5555555555554444"), CardBehaviour::Approve);
        assert_eq!(last4("4242 4242 4242 4242"), "4242");
        assert!(is_plausible("4242 4242-4242 4242"));
        assert!(!is_plausible("4242abcd42424242"));
    }
}
