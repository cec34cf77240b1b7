//! The merchant's plan catalog, parsed from the `PLANS` JSON.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, FixedOffset, Months, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::{Amount, PlanId};
use crate::error::InvalidInput;

/// How often a plan bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Months(u32),
    Days(u32),
}

/// Billing calendars run on Taiwan time (UTC+8, no daylight saving), so "the 31st" is the
/// customer's 31st and month ends clamp where the customer expects.
pub fn taipei() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

impl Interval {
    /// The due date of period `n` (0-based) of a subscription anchored at `anchor`. Months are
    /// counted from the anchor, not from the previous period, so a subscription anchored on
    /// Jan 31 is due Feb 28 (or 29), Mar 31, Apr 30, … — clamped, never drifting.
    pub fn due_date(self, anchor: DateTime<Utc>, n: u32) -> DateTime<Utc> {
        match self {
            Interval::Days(d) => anchor + Duration::days(i64::from(d) * i64::from(n)),
            Interval::Months(m) => {
                let local = anchor.with_timezone(&taipei());
                let months = m.saturating_mul(n);
                // `checked_add_months` clamps the day to the month's last day.
                local
                    .checked_add_months(Months::new(months))
                    .map(|d| d.with_timezone(&Utc))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            }
        }
    }
}

/// One line of `productDetails` sent with a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductDetail {
    pub production_code: String,
    pub description: String,
    pub quantity: u32,
    pub unit: String,
    pub unit_price: u32,
}

impl ProductDetail {
    /// Σ quantity × unit price of `lines` (0 for none).
    pub fn total(lines: &[ProductDetail]) -> u64 {
        lines
            .iter()
            .map(|l| u64::from(l.quantity) * u64::from(l.unit_price))
            .sum()
    }

    /// The `productDetails` of a refund of `refunded` from a charge of `charged` made with
    /// `lines` (Oen requires them once an e-invoice was issued, for the invoice's allowance):
    /// the charge's own lines for a full refund, else one line of the refunded amount named
    /// after the charge's first line. `lines` that do not add up to `charged` (none kept) give
    /// that one line too, with `fallback` as its product.
    pub fn refund_lines(
        lines: &[ProductDetail],
        charged: Amount,
        refunded: Amount,
        fallback: &ProductDetail,
    ) -> Vec<ProductDetail> {
        let whole = !lines.is_empty() && Self::total(lines) == u64::from(charged.ntd());
        if whole && refunded == charged {
            return lines.to_vec();
        }
        let first = if whole { &lines[0] } else { fallback };
        vec![ProductDetail {
            production_code: first.production_code.clone(),
            description: first.description.clone(),
            quantity: 1,
            unit: first.unit.clone(),
            unit_price: refunded.ntd(),
        }]
    }
}

/// A plan's terms. A subscription keeps a copy of the terms it was opened with (and renewed
/// on), so it goes on charging and reconciling after its plan leaves the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: PlanId,
    pub description: String,
    pub amount: Amount,
    pub interval: Interval,
    pub trial_days: u32,
    pub production_code: String,
    pub unit: String,
}

impl Plan {
    /// `productDetails` for one period: a single line whose quantity × unit price equals the
    /// amount, as Oen requires (else `V0001 PRODUCT_AMOUNT_NOT_MATCH`).
    pub fn product_details(&self) -> Vec<ProductDetail> {
        self.product_details_at(self.amount)
    }

    /// `productDetails` for a period opened at `amount` (an earlier price of this plan).
    pub fn product_details_at(&self, amount: Amount) -> Vec<ProductDetail> {
        vec![ProductDetail {
            production_code: self.production_code.clone(),
            description: self.description.clone(),
            quantity: 1,
            unit: self.unit.clone(),
            unit_price: amount.ntd(),
        }]
    }

    /// When the first period is due for a card bound at `bound_at`.
    pub fn first_due(&self, bound_at: DateTime<Utc>) -> DateTime<Utc> {
        bound_at + Duration::days(i64::from(self.trial_days))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPlan {
    id: PlanId,
    description: String,
    amount: Amount,
    interval_months: Option<u32>,
    interval_days: Option<u32>,
    trial_days: Option<u32>,
    production_code: Option<String>,
    unit: Option<String>,
}

/// The plans a merchant sells, keyed by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    plans: BTreeMap<PlanId, Plan>,
}

impl Catalog {
    pub fn parse(json: &str) -> Result<Self, InvalidInput> {
        let raw: Vec<RawPlan> = serde_json::from_str(json)
            .map_err(|e| InvalidInput::new("plans", format!("not a valid plan list: {e}")))?;
        let mut plans = BTreeMap::new();
        for p in raw {
            let id = p.id.clone();
            let bad = |reason: String| InvalidInput::new("plans", format!("plan {id}: {reason}"));
            let interval = match (p.interval_months, p.interval_days) {
                (Some(m), None) if (1..=120).contains(&m) => Interval::Months(m),
                (None, Some(d)) if (1..=3650).contains(&d) => Interval::Days(d),
                (Some(_), None) => return Err(bad("intervalMonths must be 1 to 120".into())),
                (None, Some(_)) => return Err(bad("intervalDays must be 1 to 3650".into())),
                _ => {
                    return Err(bad(
                        "needs exactly one of intervalMonths and intervalDays".into()
                    ))
                }
            };
            if p.description.trim().is_empty() || p.description.len() > 200 {
                return Err(bad("description must be 1 to 200 characters".into()));
            }
            let trial_days = p.trial_days.unwrap_or(0);
            if trial_days > 3650 {
                return Err(bad("trialDays must be at most 3650".into()));
            }
            let plan = Plan {
                id: p.id,
                description: p.description,
                amount: p.amount,
                interval,
                trial_days,
                production_code: p.production_code.unwrap_or_else(|| id.to_string()),
                unit: p.unit.unwrap_or_else(|| "期".to_owned()),
            };
            if plans.insert(id.clone(), plan).is_some() {
                return Err(bad("appears twice".into()));
            }
        }
        if plans.is_empty() {
            return Err(InvalidInput::new("plans", "the list is empty"));
        }
        Ok(Self { plans })
    }

    pub fn get(&self, id: &PlanId) -> Option<&Plan> {
        self.plans.get(id)
    }

    /// The catalog's plan `id`, else the terms a record `kept` (a subscription's, a session's):
    /// a plan retired from the catalog goes on for what was opened on it.
    pub fn get_or<'a>(&'a self, id: &PlanId, kept: Option<&'a Plan>) -> Option<&'a Plan> {
        self.plans.get(id).or(kept)
    }

    /// Looks a plan up by its raw id, with the error a user sees for an unknown one.
    pub fn lookup(&self, raw: &str) -> Result<&Plan, InvalidInput> {
        let id = PlanId::parse(raw)?;
        self.plans.get(&id).ok_or_else(|| {
            InvalidInput::new("plan", format!("no plan named {id:?}", id = id.as_str()))
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Plan> {
        self.plans.values()
    }
}

/// Midnight-free helper for tests and tools: a UTC instant from Taiwan local calendar fields.
pub fn taipei_time(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    taipei()
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The Taiwan calendar date of an instant, as Oen formats dates (`yyyy/MM/dd`).
pub fn taipei_date(t: DateTime<Utc>) -> String {
    let l = t.with_timezone(&taipei());
    format!("{:04}/{:02}/{:02}", l.year(), l.month(), l.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANS: &str = r#"[{"id":"premium","description":"Premium plan","amount":500,"intervalMonths":1},
        {"id":"weekly","description":"Weekly box","amount":120,"intervalDays":7,"trialDays":14,"productionCode":"WB","unit":"box"}]"#;

    #[test]
    fn catalog_parses_the_documented_shape() {
        let c = Catalog::parse(PLANS).unwrap();
        let p = c.lookup("premium").unwrap();
        assert_eq!(p.amount.ntd(), 500);
        assert_eq!(p.interval, Interval::Months(1));
        assert_eq!(p.trial_days, 0);
        let w = c.lookup("weekly").unwrap();
        assert_eq!(w.interval, Interval::Days(7));
        assert_eq!(w.production_code, "WB");
    }

    #[test]
    fn catalog_refuses_ambiguous_or_missing_interval_and_bad_amounts() {
        for bad in [
            r#"[{"id":"a","description":"x","amount":5,"intervalMonths":1,"intervalDays":3}]"#,
            r#"[{"id":"a","description":"x","amount":5}]"#,
            r#"[{"id":"a","description":"x","amount":200000,"intervalMonths":1}]"#,
            r#"[{"id":"a","description":"x","amount":0,"intervalMonths":1}]"#,
            r#"[{"id":"a","description":"x","amount":5,"intervalMonths":1,"colour":"red"}]"#,
            r#"[{"id":"a","description":"x","amount":5,"intervalMonths":1},{"id":"a","description":"y","amount":5,"intervalDays":1}]"#,
            "[]",
            "{",
        ] {
            let err = Catalog::parse(bad).unwrap_err();
            assert_eq!(err.what, "plans", "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_plan_error_names_it() {
        let c = Catalog::parse(PLANS).unwrap();
        let err = c.lookup("gold").unwrap_err();
        assert!(err.to_string().contains("gold"), "{err}");
    }

    #[test]
    fn a_refunds_lines_add_up_to_the_refund() {
        let line = |code: &str, quantity: u32, price: u32| ProductDetail {
            production_code: code.into(),
            description: format!("{code} item"),
            quantity,
            unit: "item".into(),
            unit_price: price,
        };
        let ntd = |n: u32| Amount::new(i64::from(n)).unwrap();
        let charged = vec![line("SEAT", 2, 150), line("FEE", 1, 200)];
        let fallback = line("PLAN", 1, 500);
        let sum = |lines: &[ProductDetail]| -> u32 {
            lines.iter().map(|l| l.quantity * l.unit_price).sum()
        };
        // A full refund: the charge's own lines.
        let full = ProductDetail::refund_lines(&charged, ntd(500), ntd(500), &fallback);
        assert_eq!(full, charged);
        // A partial one: one line of the refund, named after the first line.
        let part = ProductDetail::refund_lines(&charged, ntd(500), ntd(120), &fallback);
        assert_eq!(
            (part.len(), sum(&part), part[0].production_code.as_str()),
            (1, 120, "SEAT")
        );
        // No lines kept, or lines of another amount: the fallback's product.
        for lines in [vec![], vec![line("OLD", 1, 400)]] {
            let got = ProductDetail::refund_lines(&lines, ntd(500), ntd(500), &fallback);
            assert_eq!((sum(&got), got[0].production_code.as_str()), (500, "PLAN"));
        }
    }

    #[test]
    fn product_details_sum_to_the_amount() {
        let c = Catalog::parse(PLANS).unwrap();
        for p in c.iter() {
            let sum: u32 = p
                .product_details()
                .iter()
                .map(|d| d.quantity * d.unit_price)
                .sum();
            assert_eq!(sum, p.amount.ntd());
        }
    }

    #[test]
    fn monthly_due_dates_clamp_to_month_end_without_drifting() {
        let anchor = taipei_time(2027, 1, 31, 10, 0);
        let due: Vec<String> = (0..4)
            .map(|n| taipei_date(Interval::Months(1).due_date(anchor, n)))
            .collect();
        assert_eq!(
            due,
            ["2027/01/31", "2027/02/28", "2027/03/31", "2027/04/30"]
        );
        let leap = taipei_time(2028, 1, 31, 10, 0);
        assert_eq!(
            taipei_date(Interval::Months(1).due_date(leap, 1)),
            "2028/02/29"
        );
    }

    #[test]
    fn month_end_is_taiwan_month_end_not_utc() {
        // 2027-01-31 01:00 in Taipei is still Jan 30 in UTC.
        let anchor = taipei_time(2027, 1, 31, 1, 0);
        assert_eq!(
            taipei_date(Interval::Months(1).due_date(anchor, 1)),
            "2027/02/28"
        );
    }

    #[test]
    fn trial_delays_the_first_period() {
        let c = Catalog::parse(PLANS).unwrap();
        let now = taipei_time(2027, 5, 1, 0, 0);
        assert_eq!(c.lookup("premium").unwrap().first_due(now), now);
        assert_eq!(
            c.lookup("weekly").unwrap().first_due(now),
            now + Duration::days(14)
        );
    }
}
