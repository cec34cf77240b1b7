//! Flows 1–3: start a card binding, accept Oen's token webhook, report a binding's state.
//!
//! Oen's webhook is unsigned and has no event id, so it is trusted only as far as it matches a
//! binding session we created: its `id` must be the hosted page we asked for, its `customId`
//! must carry that session's reference, customer and plan, and the session must still be open
//! (or already bound to this very token, which makes a duplicate delivery harmless).

mod accept;
mod start;

use std::sync::Arc;

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::domain::{BindingRef, Catalog, CustomerId, MerchantId, PlanId};
use crate::events::EventSink;
use crate::oen::OenGateway;
use crate::store::Store;
use crate::vault::TokenVault;

pub use accept::{accept_webhook, WebhookError, WebhookOutcome};
pub use start::{start, status, with_reference, BindingStatus, StartError, Started, UsedLink};

/// Oen's hosted page lives 10 minutes from the `POST /checkout-token` call.
pub const SESSION_LIFETIME: Duration = Duration::minutes(10);

/// Webhooks for a session are still accepted this long after it expired: Oen's last delivery
/// attempt comes about 6 s after the first, and clocks drift.
pub const WEBHOOK_GRACE: Duration = Duration::minutes(2);

/// What the binding flows need.
#[derive(Clone)]
pub struct BindingDeps {
    pub store: Arc<dyn Store>,
    pub vault: Arc<dyn TokenVault>,
    pub oen: Arc<dyn OenGateway>,
    pub events: Arc<dyn EventSink>,
    pub clock: Arc<dyn Clock>,
    pub plans: Catalog,
    pub merchant: MerchantId,
}

/// The `customId` we give Oen and expect back: compact JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomId {
    #[serde(rename = "r")]
    pub reference: BindingRef,
    #[serde(rename = "c")]
    pub customer: CustomerId,
    #[serde(rename = "p")]
    pub plan: PlanId,
}
