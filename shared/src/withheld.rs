//! Ports a function does not hold. Each function's role may use only the services its flows
//! call (the template grants nothing else), and its binary links only those SDKs: checkout-start
//! never encrypts or decrypts a card token and publishes no event; the webhook never calls Oen.
//! Those functions are wired with [`Withheld`] in place of the port they lack. The flows they
//! serve never reach it (their tests run on it); should a change ever make one do so, the call
//! fails at once as a wiring error, naming the function, and nothing is sent anywhere.

use async_trait::async_trait;

use crate::domain::{
    CardToken, CheckoutId, Ciphertext, DomainEvent, MerchantId, OrderId, TransactionId,
};
use crate::events::{EventError, EventSink};
use crate::oen::{
    ChargeReceipt, ChargeRequest, CheckoutRequest, OenError, OenGateway, RefundRequest,
    Transaction, TransactionListQuery, TransactionPage,
};
use crate::queue::{QueueError, WorkMessage, WorkQueue};
use crate::vault::{TokenVault, VaultContext, VaultError};

/// A port the named function does not hold.
#[derive(Debug, Clone)]
pub struct Withheld {
    function: &'static str,
    merchant: MerchantId,
}

impl Withheld {
    pub fn new(function: &'static str, merchant: MerchantId) -> Self {
        Self { function, merchant }
    }

    fn refusal(&self, what: &str) -> String {
        format!(
            "{} is not wired to {what}: its role may not, and its flows never should",
            self.function
        )
    }
}

#[async_trait]
impl TokenVault for Withheld {
    async fn encrypt(&self, _: &CardToken, _: &VaultContext) -> Result<Ciphertext, VaultError> {
        Err(VaultError::Unavailable(self.refusal("encrypt card tokens")))
    }

    async fn decrypt(&self, _: &Ciphertext, _: &VaultContext) -> Result<CardToken, VaultError> {
        Err(VaultError::Unavailable(self.refusal("decrypt card tokens")))
    }
}

#[async_trait]
impl EventSink for Withheld {
    async fn publish(&self, _: &[DomainEvent]) -> Result<(), EventError> {
        Err(EventError(self.refusal("publish domain events")))
    }
}

#[async_trait]
impl WorkQueue for Withheld {
    async fn enqueue(&self, _: &[WorkMessage]) -> Result<(), QueueError> {
        Err(QueueError(self.refusal("enqueue charge work")))
    }
}

/// Every call is [`OenError::NotSent`]: nothing left this process.
#[async_trait]
impl OenGateway for Withheld {
    fn merchant_id(&self) -> &MerchantId {
        &self.merchant
    }

    async fn create_checkout(&self, _: &CheckoutRequest) -> Result<CheckoutId, OenError> {
        Err(OenError::NotSent(self.refusal("call Oen")))
    }

    async fn charge(&self, _: &ChargeRequest) -> Result<ChargeReceipt, OenError> {
        Err(OenError::NotSent(self.refusal("call Oen")))
    }

    async fn order_transactions(&self, _: &OrderId) -> Result<Vec<Transaction>, OenError> {
        Err(OenError::NotSent(self.refusal("call Oen")))
    }

    async fn transaction(&self, _: &TransactionId) -> Result<Transaction, OenError> {
        Err(OenError::NotSent(self.refusal("call Oen")))
    }

    async fn refund(&self, _: &RefundRequest) -> Result<(), OenError> {
        Err(OenError::NotSent(self.refusal("call Oen")))
    }

    async fn list_transactions(
        &self,
        _: &TransactionListQuery,
    ) -> Result<TransactionPage, OenError> {
        Err(OenError::NotSent(self.refusal("call Oen")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BindingRef, CustomerId};

    #[tokio::test]
    async fn every_call_fails_as_not_sent_and_names_the_function() {
        let w = Withheld::new("webhook", MerchantId::parse("ming").unwrap());
        let ctx = VaultContext {
            merchant: MerchantId::parse("ming").unwrap(),
            customer: CustomerId::parse("c1").unwrap(),
            binding: BindingRef::generate(),
        };
        let token = CardToken::parse("tokSecretValue42").unwrap();
        match w.encrypt(&token, &ctx).await {
            Err(VaultError::Unavailable(m)) => {
                assert!(
                    m.starts_with("webhook is not wired to encrypt card tokens"),
                    "{m}"
                );
                assert!(!m.contains("tokSecretValue42"));
            }
            other => panic!("{other:?}"),
        }
        assert!(w
            .publish(&[])
            .await
            .unwrap_err()
            .0
            .contains("publish domain events"));
        let order = OrderId::parse("sub1000001").unwrap();
        assert!(matches!(
            w.order_transactions(&order).await,
            Err(OenError::NotSent(m)) if m == "webhook is not wired to call Oen: its role may not, and its flows never should"
        ));
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        let listing = TransactionListQuery {
            start: day,
            end: day,
            page: None,
        };
        assert!(matches!(
            w.list_transactions(&listing).await,
            Err(OenError::NotSent(m)) if m.starts_with("webhook is not wired to call Oen")
        ));
        assert_eq!(w.merchant_id().as_str(), "ming");
        assert!(w
            .enqueue(&[])
            .await
            .unwrap_err()
            .0
            .starts_with("webhook is not wired to enqueue charge work"));
    }
}
