//! What a merchant does to a deployed stack, implemented once: mint a start link, look up a
//! customer or a subscription, cancel, resume, refund a period or a one-off charge. The merchant API function and the local
//! dev stack both call these; cancel and refund go through [`crate::charging`]'s operations, so
//! an operator and the charger racing on one subscription meet the same store conditions.
//!
//! Every operation takes the caller's raw ids and request bodies and parses them here, so each
//! host answers the same precise [`OpsError`] for the same mistake.

mod due;
mod error;
mod requests;
mod views;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::charging::{self, ChargeDeps, OperationError, Refundable};
use crate::domain::{
    Amount, ChargeId, ChargePeriod, CustomerId, OrderId, Subscription, SubscriptionId,
    TransactionId,
};
use crate::links;
use crate::secrets::SecretSource;
use crate::store::{StoreError, StoreExt, Versioned};

pub use due::{DueItem, DueView, DUE_PAGE};
pub use error::{ErrorBody, ErrorDetail, OpsError};
pub use requests::{from_json, CancelAt, CancelRequest, LinkRequest, RefundRequest};
pub use views::{
    CardView, CustomerView, LinkView, PeriodStatus, PeriodView, RefundView, SubscriptionView,
};

/// How many of a subscription's latest periods a view shows.
pub const RECENT_PERIODS: usize = 6;

/// The longest `name` a start link request accepts.
pub const MAX_NAME_CHARS: usize = crate::domain::MAX_NAME_CHARS;

/// The longest refund `reason` passed to Oen.
pub const MAX_REASON_CHARS: usize = 200;

/// What the operations need: the charging adapters (store, Oen, events, clock, plans), the
/// secret holding the link signing key, and how long start links may live.
#[derive(Clone)]
pub struct Operations {
    pub deps: ChargeDeps,
    pub secrets: Arc<dyn SecretSource>,
    /// `LINK_MAX_TTL`: the longest `ttlSeconds` a link may be minted with (checkout-start
    /// refuses links that live longer).
    pub link_max_ttl: Duration,
}

impl Operations {
    /// Mints a signed start link to `start_url` (the `checkout-start` route the customer's
    /// browser opens, `https://…/checkout/start`) for `customer` and `plan`, valid
    /// `ttlSeconds`. `email`, `name` and `invoiceInfo` are signed into the link by the rules
    /// checkout-start applies; the binding keeps them with the subscription for every charge.
    pub async fn mint_link(
        &self,
        start_url: &str,
        request: LinkRequest,
    ) -> Result<LinkView, OpsError> {
        let customer =
            CustomerId::parse(&request.customer).map_err(|e| OpsError::invalid("customer", e))?;
        let plan = self
            .deps
            .plans
            .lookup(&request.plan)
            .map_err(|e| OpsError::invalid("plan", e))?
            .id
            .clone();
        let max = self.link_max_ttl.num_seconds();
        if !(1..=max).contains(&request.ttl_seconds) {
            return Err(OpsError::invalid(
                "ttlSeconds",
                format!("must be from 1 to {max} (LINK_MAX_TTL)"),
            ));
        }
        // The rules checkout-start applies when the link is opened (`crate::domain::Payer`).
        if let Some(email) = &request.email {
            crate::domain::Email::parse(email).map_err(|e| OpsError::invalid("email", e))?;
        }
        if let Some(name) = &request.name {
            crate::domain::PayerName::parse(name).map_err(|e| OpsError::invalid("name", e))?;
        }
        let invoice = match &request.invoice_info {
            Some(info) => {
                let text = info.to_string();
                crate::domain::InvoiceInfo::parse(&text)
                    .map_err(|e| OpsError::invalid("invoiceInfo", e))?;
                Some(text)
            }
            None => None,
        };
        let secrets = self
            .secrets
            .current()
            .await
            .map_err(|e| OpsError::Unavailable(format!("the secret: {e}")))?;
        let now = self.deps.clock.now();
        let expires = whole_second(now + Duration::seconds(request.ttl_seconds));
        let url = {
            use secrecy::ExposeSecret;
            links::mint_with(
                start_url,
                secrets.secrets.link_signing_key.expose_secret().as_bytes(),
                &customer,
                &plan,
                expires,
                links::LinkPayer {
                    email: request.email.as_deref(),
                    name: request.name.as_deref(),
                    invoice: invoice.as_deref(),
                },
            )
        };
        Ok(LinkView {
            url,
            customer: customer.to_string(),
            plan: plan.to_string(),
            expires_at: expires,
        })
    }

    /// A customer's subscriptions (each with its recent periods) and cards (last 4 only).
    pub async fn customer(&self, customer: &str) -> Result<CustomerView, OpsError> {
        let customer = CustomerId::parse(customer).map_err(|e| OpsError::invalid("customer", e))?;
        let records = self.deps.store.customer_records(&customer).await?;
        if records.cards.is_empty() && records.subscriptions.is_empty() {
            return Err(OpsError::NotFound(format!(
                "no customer {customer} (no card and no subscription)"
            )));
        }
        let subs: Vec<Subscription> = records.subscriptions.into_iter().map(|s| s.value).collect();
        let cards: Vec<_> = records.cards.into_iter().map(|c| c.value).collect();
        let mut views = Vec::with_capacity(subs.len());
        for s in &subs {
            let card = cards.iter().find(|c| c.binding == s.card);
            let periods = self.recent_periods(&s.id).await?;
            views.push(SubscriptionView::of(s, card, &periods));
        }
        Ok(CustomerView {
            customer: customer.to_string(),
            subscriptions: views,
            cards: cards.iter().map(|c| CardView::of(c, &subs)).collect(),
        })
    }

    /// One subscription by its id.
    pub async fn subscription(&self, id: &str) -> Result<SubscriptionView, OpsError> {
        let id = parse_subscription_id(id)?;
        let sub = self.find(&id).await?;
        self.view(&sub.value).await
    }

    /// Cancels now (the current period is closed unless a charge may be under way, which is
    /// still reconciled; nothing is charged again), or at the end of the paid period.
    /// Idempotent: canceling a canceled subscription answers it as it is. `actor` (who asks:
    /// an IAM principal's ARN) goes into the audit entry, as for resume and refund.
    pub async fn cancel(
        &self,
        actor: &str,
        id: &str,
        request: CancelRequest,
    ) -> Result<SubscriptionView, OpsError> {
        let id = parse_subscription_id(id)?;
        let sub = self.find(&id).await?;
        let at_period_end = request.at == CancelAt::PeriodEnd;
        charging::cancel_subscription(&self.deps, sub, at_period_end, actor).await?;
        self.subscription_now(&id).await
    }

    /// Undoes a cancel at period end. A canceled subscription cannot be resumed (409): the
    /// customer binds a card again instead.
    pub async fn resume(&self, actor: &str, id: &str) -> Result<SubscriptionView, OpsError> {
        let id = parse_subscription_id(id)?;
        let sub = self.find(&id).await?;
        match charging::resume_subscription(&self.deps, sub, actor).await {
            Ok(_) => self.subscription_now(&id).await,
            Err(OperationError::Refused(_)) => Err(OpsError::Conflict(format!(
                "subscription {id} is canceled already and cannot be resumed; send the customer a new start link to subscribe again"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Refunds the paid period `order_id` (`{subscription id}P{period:06}`), whole or
    /// `amount`. Oen allows one refund per transaction: a repeat of a refund that succeeded
    /// (same amount, or none for a full refund) answers the recorded refund and sends nothing;
    /// a different one is a conflict. After a lost answer, repeating is safe: Oen's
    /// transaction is read before anything is sent again.
    pub async fn refund(
        &self,
        actor: &str,
        order_id: &str,
        request: RefundRequest,
    ) -> Result<RefundView, OpsError> {
        let (id, n) = parse_order_id(order_id)?;
        let (amount, reason) = refund_parameters(request)?;
        let no_period = || OpsError::NotFound(format!("no period with order id {order_id}"));
        let period = self
            .deps
            .store
            .period(&id, n)
            .await?
            .ok_or_else(no_period)?
            .value;
        // The customer: the subscription's, or, for a subscription replaced since (canceled,
        // then a new card bound: a new id), the one the period kept.
        let customer = match self.find(&id).await {
            Ok(sub) => sub.value.customer,
            Err(OpsError::NotFound(_)) => period.customer.clone().ok_or_else(no_period)?,
            Err(e) => return Err(e),
        };
        let before = Refundable::of_period(&period);
        if let Some(recorded) = before.recorded(amount)? {
            return Ok(recorded);
        }
        let transaction = before.precheck(amount)?;
        let result =
            charging::refund_period(&self.deps, &customer, &id, n, amount, reason, actor).await;
        let reread = || async {
            let now = self
                .deps
                .store
                .period(&id, n)
                .await?
                .ok_or_else(no_period)?;
            Ok(Refundable::of_period(&now.value))
        };
        before.outcome(transaction, amount, result, reread).await
    }

    /// Refunds the paid one-off charge `id` (its charge id, or its order id `C…`), whole or
    /// `amount`, under the same rules as [`Self::refund`] of a period.
    pub async fn refund_charge(
        &self,
        actor: &str,
        id: &str,
        request: RefundRequest,
    ) -> Result<RefundView, OpsError> {
        let id = parse_charge_id(id)?;
        let (amount, reason) = refund_parameters(request)?;
        let no_charge = || OpsError::NotFound(format!("no charge {id}"));
        let charge = self
            .deps
            .store
            .one_off_charge(&id)
            .await?
            .filter(|c| c.value.merchant == self.deps.merchant)
            .ok_or_else(no_charge)?
            .value;
        let before = Refundable::of_charge(&charge);
        if let Some(recorded) = before.recorded(amount)? {
            return Ok(recorded);
        }
        let transaction = before.precheck(amount)?;
        let result = charging::refund_one_off(&self.deps, &id, amount, reason, actor).await;
        let reread = || async {
            let now = self
                .deps
                .store
                .one_off_charge(&id)
                .await?
                .ok_or_else(no_charge)?;
            Ok(Refundable::of_charge(&now.value))
        };
        before.outcome(transaction, amount, result, reread).await
    }

    /// The subscription with `id`, or 404.
    async fn find(&self, id: &SubscriptionId) -> Result<Versioned<Subscription>, OpsError> {
        self.deps
            .store
            .subscription_by_id(id)
            .await?
            .ok_or_else(|| OpsError::NotFound(format!("no subscription {id}")))
    }

    /// The subscription as stored after an operation on it, by its key (read consistently).
    async fn subscription_now(&self, id: &SubscriptionId) -> Result<SubscriptionView, OpsError> {
        let sub = self.find(id).await?;
        self.view(&sub.value).await
    }

    async fn view(&self, s: &Subscription) -> Result<SubscriptionView, OpsError> {
        let card = self.deps.store.card(&s.customer, &s.card).await?;
        let periods = self.recent_periods(&s.id).await?;
        Ok(SubscriptionView::of(
            s,
            card.as_ref().map(|c| &c.value),
            &periods,
        ))
    }

    async fn recent_periods(&self, id: &SubscriptionId) -> Result<Vec<ChargePeriod>, OpsError> {
        Ok(self
            .deps
            .store
            .recent_periods(id, RECENT_PERIODS)
            .await?
            .into_iter()
            .map(|p| p.value)
            .collect())
    }
}

fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

/// A due-index shard (`0` to `DUE_SHARDS - 1`), or a precise 400.
pub fn parse_shard(raw: &str) -> Result<u16, OpsError> {
    raw.parse::<u16>()
        .ok()
        .filter(|s| *s < crate::store::DUE_SHARDS)
        .ok_or_else(|| {
            OpsError::invalid(
                "shard",
                format!(
                    "must be a whole number from 0 to {}",
                    crate::store::DUE_SHARDS - 1
                ),
            )
        })
}

/// A subscription id from a path, or a precise 400.
pub fn parse_subscription_id(raw: &str) -> Result<SubscriptionId, OpsError> {
    if raw.len() != 16 {
        return Err(OpsError::invalid(
            "subscription id",
            "must be 16 letters and digits",
        ));
    }
    SubscriptionId::parse(raw).map_err(|e| OpsError::invalid("subscription id", e.reason))
}

/// A period's order id (`{subscription id}P{period:06}`, see [`OrderId::for_period`]) split
/// into its subscription and period, or a precise 400.
pub fn parse_order_id(raw: &str) -> Result<(SubscriptionId, u32), OpsError> {
    let malformed = || {
        OpsError::invalid(
            "order id",
            "must be a period's order id: the 16-character subscription id, P, and 6 digits",
        )
    };
    if raw.len() != 23 || !raw.is_ascii() {
        return Err(malformed());
    }
    let (sub, rest) = raw.split_at(16);
    let digits = rest.strip_prefix('P').ok_or_else(malformed)?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let period: u32 = digits.parse().map_err(|_| malformed())?;
    let sub = SubscriptionId::parse(sub).map_err(|_| malformed())?;
    debug_assert_eq!(OrderId::for_period(&sub, period).as_str(), raw);
    Ok((sub, period))
}

/// A refund's amount and reason as asked, or a precise 400.
fn refund_parameters(request: RefundRequest) -> Result<(Option<Amount>, Option<String>), OpsError> {
    let amount = request
        .amount
        .map(Amount::new)
        .transpose()
        .map_err(|e| OpsError::invalid("amount", e.reason))?;
    if let Some(reason) = &request.reason {
        let chars = reason.chars().count();
        if chars == 0 || chars > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
            return Err(OpsError::invalid(
                "reason",
                format!("must be 1 to {MAX_REASON_CHARS} characters without control characters"),
            ));
        }
    }
    Ok((amount, request.reason))
}

/// A one-off charge's id, or its order id (`C` and the id), or a precise 400.
pub fn parse_charge_id(raw: &str) -> Result<ChargeId, OpsError> {
    let bare = match raw.strip_prefix('C') {
        Some(rest) if raw.len() == 1 + ChargeId::LEN => rest,
        _ => raw,
    };
    ChargeId::parse(bare).map_err(|_| {
        OpsError::invalid(
            "charge id",
            format!(
                "must be a charge's id ({} letters and digits) or its order id (C and the id)",
                ChargeId::LEN
            ),
        )
    })
}

/// What the merchant's refund routes answer of a [`Refundable`], before and after the refund.
impl Refundable {
    /// The refund recorded, when there is one: the same refund asked again is its replay;
    /// another is a conflict (Oen allows one refund per transaction).
    fn recorded(&self, amount: Option<Amount>) -> Result<Option<RefundView>, OpsError> {
        let Some(refunded) = self.refunded else {
            return Ok(None);
        };
        if amount.unwrap_or(self.charged) == refunded {
            let transaction = self.paid_transaction()?;
            return Ok(Some(self.view(transaction, refunded.ntd(), true)));
        }
        Err(OpsError::Conflict(format!(
            "order {} was refunded {refunded} already; Oen allows one refund per transaction",
            self.order_id
        )))
    }

    /// The transaction that paid, or why what is unpaid cannot be refunded.
    fn paid_transaction(&self) -> Result<TransactionId, OpsError> {
        self.paid_by.clone().ok_or_else(|| {
            OpsError::Conflict(format!(
                "order {} is not paid; only a paid period or charge can be refunded",
                self.order_id
            ))
        })
    }

    /// The transaction to refund, or why it cannot be refunded `amount`, before anything is
    /// sent.
    fn precheck(&self, amount: Option<Amount>) -> Result<TransactionId, OpsError> {
        let transaction = self.paid_transaction()?;
        if let Some(a) = amount {
            if a > self.charged {
                return Err(OpsError::invalid(
                    "amount",
                    format!("{a} is more than the {} charged", self.charged),
                ));
            }
        }
        Ok(transaction)
    }

    /// The answer to a refund that was sent: `reread` reads the record again after a
    /// concurrent write.
    async fn outcome<F, Fut>(
        &self,
        transaction: TransactionId,
        amount: Option<Amount>,
        result: Result<Amount, OperationError>,
        reread: F,
    ) -> Result<RefundView, OpsError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Refundable, OpsError>>,
    {
        let wanted = amount.unwrap_or(self.charged);
        match result {
            Ok(refunded) if refunded == wanted => Ok(self.view(transaction, refunded.ntd(), false)),
            // Oen had refunded the transaction already, another amount (a racing request, or
            // one made in Oen's back office): that refund is now recorded; this one is not made.
            Ok(refunded) => Err(OpsError::Conflict(format!(
                "order {} was refunded {refunded} already; Oen allows one refund per transaction",
                self.order_id
            ))),
            // A refund was recorded meanwhile (a concurrent repeat): answer it if it is the
            // same refund.
            Err(OperationError::Store(StoreError::Conflict(c))) => {
                match reread().await?.recorded(amount)? {
                    Some(recorded) => Ok(recorded),
                    None => Err(StoreError::Conflict(c).into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn view(&self, transaction: TransactionId, refunded: u32, replayed: bool) -> RefundView {
        RefundView {
            order_id: self.order_id.clone(),
            transaction,
            refunded,
            charged: self.charged.ntd(),
            replayed,
        }
    }
}

#[cfg(test)]
mod tests;
