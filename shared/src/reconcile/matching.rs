//! What one of Oen's transactions says against our record of its order: the pure part of the
//! reconciliation.
//!
//! - An order id of ours is `{subscription id}P{period:06}` (a period) or `C{charge id}` (a
//!   one-off charge); any other order id, or one whose record we do not have, is not ours.
//! - Money moved (`charged`, `claimed`, or refunded after) under an order that is not ours is an
//!   **orphan**. A transaction that moved no money (failed, cancelled, still charging) is only
//!   counted.
//! - Under one of our orders, a paid transaction is the one our record says pays the order
//!   (then its amount must be the order's, else an **amount mismatch**), another one (a
//!   **double charge**, whether or not the charger already found and refunded it), or the order
//!   is not paid with us at all (**unsettled**: still unknown, open or declined on our side).
//! - A refund Oen shows on a transaction of ours is **foreign** unless our record made it: the
//!   period's or one-off charge's own refund of its paying transaction, or the refund of a
//!   duplicate the charger recorded (refunded, pending or failed: the charger sent or is
//!   sending it).

use crate::domain::{
    AnomalyRefund, ChargeId, ChargePeriod, ChargeState, Finding, FindingKind, OneOffCharge,
    PeriodState, SubscriptionId, TransactionId,
};
use crate::oen::{Transaction, TxStatus};

/// Where an order id points, by its shape alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRef {
    Period {
        subscription: SubscriptionId,
        period: u32,
    },
    Charge(ChargeId),
    /// Not an order id we make.
    Foreign,
}

impl OrderRef {
    pub fn of(order_id: &str) -> Self {
        if let Some(charge) = order_id.strip_prefix('C') {
            if let Ok(id) = ChargeId::parse(charge) {
                return OrderRef::Charge(id);
            }
        }
        if order_id.len() == 23 && order_id.as_bytes()[16] == b'P' {
            let (sub, period) = order_id.split_at(16);
            let digits = &period[1..];
            if let (Ok(subscription), true) = (
                SubscriptionId::parse(sub),
                digits.bytes().all(|b| b.is_ascii_digit()),
            ) {
                if let Ok(period) = digits.parse() {
                    return OrderRef::Period {
                        subscription,
                        period,
                    };
                }
            }
        }
        OrderRef::Foreign
    }
}

/// Our record of an order, as the reconciliation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurOrder {
    /// NT$ the order asked for.
    pub amount: i64,
    /// The transaction our record says pays the order.
    pub paid_by: Option<TransactionId>,
    /// Transactions of the order we refunded (or are refunding).
    pub refunded_by_us: Vec<TransactionId>,
}

impl OurOrder {
    pub fn of_period(p: &ChargePeriod) -> Self {
        let paid_by = match &p.state {
            PeriodState::Paid { transaction, .. } => Some(transaction.clone()),
            _ => None,
        };
        let mut refunded_by_us: Vec<TransactionId> = p
            .anomalies
            .iter()
            .filter(|a| a.refund != AnomalyRefund::Manual)
            .map(|a| a.transaction.clone())
            .collect();
        if let (Some(paying), Some(_)) = (&paid_by, p.refunded) {
            refunded_by_us.push(paying.clone());
        }
        Self {
            amount: i64::from(p.amount.ntd()),
            paid_by,
            refunded_by_us,
        }
    }

    pub fn of_charge(c: &OneOffCharge) -> Self {
        let paid_by = match &c.state {
            ChargeState::Paid { transaction, .. } => Some(transaction.clone()),
            _ => None,
        };
        let refunded_by_us = match (&paid_by, c.refunded) {
            (Some(paying), Some(_)) => vec![paying.clone()],
            _ => Vec::new(),
        };
        Self {
            amount: i64::from(c.amount.ntd()),
            paid_by,
            refunded_by_us,
        }
    }
}

/// Longest order id a finding keeps: Oen's order ids are ours (≤ 32), a foreign one is cut.
const ORDER_ID_CHARS: usize = 64;

/// The findings about one transaction, given our record of its order (`None`: not ours).
pub fn assess(tx: &Transaction, ours: Option<&OurOrder>) -> Vec<Finding> {
    let finding = |kind: FindingKind| Finding {
        kind,
        transaction: tx.id.clone(),
        order_id: tx
            .order_id
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(ORDER_ID_CHARS)
            .collect(),
        status: status_name(&tx.status),
        amount: tx.amount,
        expected_amount: ours.map(|o| o.amount),
        refund_amount: tx.refund_amount.filter(|r| *r > 0),
        recorded_transaction: ours.and_then(|o| o.paid_by.clone()),
        created_at: tx.created_at.clone(),
    };
    let paid = tx.status.is_paid();
    let Some(ours) = ours else {
        return if paid {
            vec![finding(FindingKind::Orphan)]
        } else {
            Vec::new()
        };
    };
    let mut findings = Vec::new();
    if paid {
        match &ours.paid_by {
            Some(paying) if *paying == tx.id => {
                if tx.amount != ours.amount {
                    findings.push(finding(FindingKind::AmountMismatch));
                }
            }
            Some(_) => findings.push(finding(FindingKind::DoubleCharge)),
            None => findings.push(finding(FindingKind::Unsettled)),
        }
    }
    if shows_refund(tx) && !ours.refunded_by_us.contains(&tx.id) {
        findings.push(finding(FindingKind::ForeignRefund));
    }
    findings
}

/// Oen shows money going back on the transaction.
fn shows_refund(tx: &Transaction) -> bool {
    tx.refund_amount.is_some_and(|r| r > 0)
        || matches!(
            tx.status,
            TxStatus::Refunding | TxStatus::Refunded | TxStatus::RefundedPostPayout
        )
}

fn status_name(status: &TxStatus) -> String {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(id: &str, order: &str, amount: i64, status: &str, refunded: i64) -> Transaction {
        serde_json::from_value(serde_json::json!({
            "id": id, "orderId": order, "amount": amount, "status": status,
            "refundAmount": refunded, "createdAt": "2026-11-29T04:00:00.000Z"
        }))
        .unwrap()
    }

    fn ours(amount: i64, paid_by: Option<&str>, refunded: &[&str]) -> OurOrder {
        OurOrder {
            amount,
            paid_by: paid_by.map(|t| TransactionId::parse(t).unwrap()),
            refunded_by_us: refunded
                .iter()
                .map(|t| TransactionId::parse(t).unwrap())
                .collect(),
        }
    }

    fn kinds(findings: &[Finding]) -> Vec<FindingKind> {
        findings.iter().map(|f| f.kind).collect()
    }

    const SUB: &str = "AbCdEfGhIjKlMnOp";

    #[test]
    fn order_ids_of_periods_and_one_off_charges_are_recognised_by_shape() {
        let period = OrderRef::of(&format!("{SUB}P000012"));
        assert_eq!(
            period,
            OrderRef::Period {
                subscription: SubscriptionId::parse(SUB).unwrap(),
                period: 12
            }
        );
        let charge = OrderRef::of("CabcdefghijABCDEFGHIJ");
        assert_eq!(
            charge,
            OrderRef::Charge(ChargeId::parse("abcdefghijABCDEFGHIJ").unwrap())
        );
        for foreign in [
            "",
            "order-1",
            &format!("{SUB}P00001x"),
            &format!("{SUB}X000012"),
            "Cshort",
            "C-bcdefghijABCDEFGHIJ",
            // 23 bytes with a `P` at byte 16, but not ASCII before it.
            "ééééééééP000001",
        ] {
            assert_eq!(OrderRef::of(foreign), OrderRef::Foreign, "{foreign}");
        }
    }

    #[test]
    fn the_paying_transaction_at_its_amount_is_no_finding() {
        let t = tx("P1", "o", 500, "charged", 0);
        assert!(assess(&t, Some(&ours(500, Some("P1"), &[]))).is_empty());
        let claimed = tx("P1", "o", 500, "claimed", 0);
        assert!(assess(&claimed, Some(&ours(500, Some("P1"), &[]))).is_empty());
    }

    #[test]
    fn money_under_an_order_not_ours_is_an_orphan_and_a_failure_is_nothing() {
        let t = tx("P9", "elsewhere", 300, "charged", 0);
        let found = assess(&t, None);
        assert_eq!(kinds(&found), [FindingKind::Orphan]);
        assert_eq!(found[0].expected_amount, None);
        assert_eq!(found[0].order_id, "elsewhere");
        assert!(assess(&tx("P9", "elsewhere", 300, "failed", 0), None).is_empty());
        // Refunded after being paid is still money that moved.
        let refunded = tx("P9", "elsewhere", 300, "refunded", 300);
        assert_eq!(kinds(&assess(&refunded, None)), [FindingKind::Orphan]);
    }

    #[test]
    fn a_paying_transaction_of_another_amount_is_a_mismatch() {
        let t = tx("P1", "o", 650, "charged", 0);
        let found = assess(&t, Some(&ours(500, Some("P1"), &[])));
        assert_eq!(kinds(&found), [FindingKind::AmountMismatch]);
        assert_eq!(
            (found[0].amount, found[0].expected_amount),
            (650, Some(500))
        );
    }

    #[test]
    fn a_second_paid_transaction_is_a_double_charge_and_a_failed_one_is_not() {
        let second = tx("P2", "o", 500, "charged", 0);
        let found = assess(&second, Some(&ours(500, Some("P1"), &[])));
        assert_eq!(kinds(&found), [FindingKind::DoubleCharge]);
        assert_eq!(
            found[0].recorded_transaction,
            Some(TransactionId::parse("P1").unwrap())
        );
        let failed = tx("P2", "o", 500, "failed", 0);
        assert!(assess(&failed, Some(&ours(500, Some("P1"), &[]))).is_empty());
        // The charger found and refunded it: still a double charge, and the refund is ours.
        let refunded = tx("P2", "o", 500, "refunded", 500);
        let found = assess(&refunded, Some(&ours(500, Some("P1"), &["P2"])));
        assert_eq!(kinds(&found), [FindingKind::DoubleCharge]);
    }

    #[test]
    fn a_refund_we_did_not_make_is_foreign() {
        let t = tx("P1", "o", 500, "refunded", 200);
        let found = assess(&t, Some(&ours(500, Some("P1"), &[])));
        assert_eq!(kinds(&found), [FindingKind::ForeignRefund]);
        assert_eq!(found[0].refund_amount, Some(200));
        assert!(assess(&t, Some(&ours(500, Some("P1"), &["P1"]))).is_empty());
    }

    #[test]
    fn a_one_off_charges_refund_is_ours_only_once_we_recorded_it() {
        let mut charge = crate::store::contract::one_off_charge("cust-1", None);
        charge.state = ChargeState::Paid {
            transaction: TransactionId::parse("P7").unwrap(),
            auth_code: None,
            paid_at: charge.created_at,
        };
        let order = charge.order_id.to_string();
        let t = tx("P7", &order, 150, "refunded", 40);
        let found = assess(&t, Some(&OurOrder::of_charge(&charge)));
        assert_eq!(kinds(&found), [FindingKind::ForeignRefund]);
        charge.refunded = Some(crate::domain::Amount::new(40).unwrap());
        assert!(assess(&t, Some(&OurOrder::of_charge(&charge))).is_empty());
        // Our refund of the paying transaction does not cover another one.
        let other = tx("P8", &order, 150, "refunded", 150);
        let found = assess(&other, Some(&OurOrder::of_charge(&charge)));
        assert!(
            found.iter().any(|f| f.kind == FindingKind::ForeignRefund),
            "{found:?}"
        );
    }

    #[test]
    fn paid_at_oen_while_not_paid_with_us_is_unsettled() {
        let t = tx("P1", "o", 500, "charged", 0);
        assert_eq!(
            kinds(&assess(&t, Some(&ours(500, None, &[])))),
            [FindingKind::Unsettled]
        );
        // Still charging at Oen: nothing to say yet.
        assert!(assess(
            &tx("P1", "o", 500, "charging", 0),
            Some(&ours(500, None, &[]))
        )
        .is_empty());
    }
}
