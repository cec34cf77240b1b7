//! Operations the library API and the admin HTTP API share, so both act on the state the
//! same way.

use crate::clock::SimClock;
use crate::delivery::DeliveryRecord;
use crate::model::{ForceTarget, ForcedOutcome, Knobs, LedgerEntry};
use crate::state::{SharedRef, State};
use crate::webhook;
use chrono::{DateTime, Utc};
use std::time::Duration;

pub(crate) fn reset(shared: &SharedRef) {
    shared.abort_tasks();
    let mut st = shared.lock();
    *st = State::new(
        shared.initial_knobs.clone(),
        shared.initial_webhook_url.clone(),
    );
    drop(st);
    shared.clock_moved();
}

pub(crate) fn ledger(shared: &SharedRef) -> Vec<LedgerEntry> {
    shared.lock().ledger()
}

pub(crate) fn create_token(shared: &SharedRef, card_number: &str) -> String {
    shared.lock().create_token(card_number)
}

pub(crate) fn deliveries(shared: &SharedRef) -> Vec<DeliveryRecord> {
    shared.lock().deliveries.clone()
}

pub(crate) fn now(shared: &SharedRef) -> DateTime<Utc> {
    shared.lock().now()
}

pub(crate) fn advance_clock(shared: &SharedRef, by: Duration) -> DateTime<Utc> {
    change_clock(shared, |clock| clock.advance(by))
}

pub(crate) fn set_clock(shared: &SharedRef, to: DateTime<Utc>) -> DateTime<Utc> {
    change_clock(shared, |clock| clock.set(to))
}

pub(crate) fn freeze_clock(shared: &SharedRef, frozen: bool) {
    change_clock(shared, |clock| clock.set_frozen(frozen));
}

/// Changes the clock, settles what came due and wakes whatever waits on the clock.
fn change_clock(shared: &SharedRef, change: impl FnOnce(&mut SimClock)) -> DateTime<Utc> {
    let now = {
        let mut st = shared.lock();
        change(&mut st.clock);
        st.settle_due();
        st.now()
    };
    shared.clock_moved();
    now
}

pub(crate) fn clock_frozen(shared: &SharedRef) -> bool {
    shared.lock().clock.is_frozen()
}

pub(crate) fn force(shared: &SharedRef, target: ForceTarget, outcome: ForcedOutcome, times: u32) {
    shared.lock().force(target, outcome, times);
}

pub(crate) fn clear_forced(shared: &SharedRef) {
    shared.lock().forced.clear();
}

pub(crate) fn settle_pending(shared: &SharedRef) -> usize {
    shared.lock().settle_all()
}

pub(crate) fn knobs(shared: &SharedRef) -> Knobs {
    shared.lock().knobs.clone()
}

pub(crate) fn update_knobs(shared: &SharedRef, f: impl FnOnce(&mut Knobs)) -> Knobs {
    let mut st = shared.lock();
    f(&mut st.knobs);
    st.knobs.clone()
}

pub(crate) fn webhook_url(shared: &SharedRef) -> Option<String> {
    shared.lock().webhook_url.clone()
}

pub(crate) fn set_webhook_url(shared: &SharedRef, url: Option<String>) {
    shared.lock().webhook_url = url;
}

pub(crate) fn redeliver(shared: &SharedRef, delivery_id: u64) -> Option<u64> {
    webhook::redeliver(shared, delivery_id)
}

pub(crate) fn release_held(shared: &SharedRef) -> usize {
    webhook::release_held(shared)
}
