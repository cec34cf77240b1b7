use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{NaiveDate, Utc};

use super::*;
use crate::domain::{CustomerId, PlanId};
use crate::queue::{MemoryQueue, QueueError};
use crate::store::DUE_SHARDS;

fn charge(customer: &str) -> WorkMessage {
    WorkMessage::Charge {
        customer: CustomerId::parse(customer).unwrap(),
        plan: PlanId::parse("premium").unwrap(),
    }
}

fn ops() -> (DeadLetterOps, Arc<MemoryDeadLetters>, Arc<MemoryQueue>) {
    let letters = Arc::new(MemoryDeadLetters::default());
    let queue = Arc::new(MemoryQueue::default());
    (
        DeadLetterOps {
            letters: letters.clone(),
            queue: queue.clone(),
        },
        letters,
        queue,
    )
}

fn at(t: &str) -> chrono::DateTime<Utc> {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap()
        .with_timezone(&Utc)
}

fn scheduler_attributes() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "ERROR_CODE".to_owned(),
            "AWS.Lambda.ThrottlingException".to_owned(),
        ),
        ("RETRY_ATTEMPTS".to_owned(), "5".to_owned()),
    ])
}

#[test]
fn a_charge_message_is_sent_back_as_it_was() {
    let body = serde_json::to_string(&charge("c1")).unwrap();
    assert_eq!(
        revive(DeadLetterQueue::Charge, &body).unwrap(),
        vec![charge("c1")]
    );
    let plan = WorkMessage::plan(7, at("2027-01-31T02:00:00Z"), None);
    let body = serde_json::to_string(&plan).unwrap();
    assert_eq!(revive(DeadLetterQueue::Charge, &body).unwrap(), vec![plan]);
}

#[test]
fn a_missed_scheduled_run_becomes_planning_of_every_shard_at_its_time() {
    let work = revive(
        DeadLetterQueue::Schedule,
        r#"{"scheduledTime":"2027-01-31T02:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(work.len(), usize::from(DUE_SHARDS));
    for (i, m) in work.iter().enumerate() {
        assert_eq!(
            m,
            &WorkMessage::plan(i as u16, at("2027-01-31T02:00:00Z"), None),
            "planning as of the missed run's time, not now"
        );
    }
}

#[test]
fn a_missed_reconciliation_becomes_the_reconciliation_of_its_day() {
    // Scheduled at 00:30 Taipei on 1 February: the day before, in Taipei.
    let work = revive(
        DeadLetterQueue::Schedule,
        r#"{"job":"reconcile","scheduledTime":"2027-01-31T16:30:00Z"}"#,
    )
    .unwrap();
    assert_eq!(
        work,
        vec![WorkMessage::Reconcile {
            date: NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
            rerun: false
        }]
    );
    let work = revive(
        DeadLetterQueue::Schedule,
        r#"{"job":"reconcile","date":"2027-01-15"}"#,
    )
    .unwrap();
    assert_eq!(
        work,
        vec![WorkMessage::Reconcile {
            date: NaiveDate::from_ymd_opt(2027, 1, 15).unwrap(),
            rerun: true
        }]
    );
}

#[test]
fn anything_else_is_kept_with_its_reason() {
    for (queue, body, why) in [
        (DeadLetterQueue::Charge, "{}", "not a charge queue message"),
        (
            DeadLetterQueue::Charge,
            "{\"kind\":\"refund\"}",
            "not a charge queue message",
        ),
        (DeadLetterQueue::Schedule, "[]", "not a JSON object"),
        (
            DeadLetterQueue::Schedule,
            "{}",
            "neither a scheduled run's input",
        ),
        (
            DeadLetterQueue::Schedule,
            r#"{"scheduledTime":"2027-01-31T02:00:00Z","extra":1}"#,
            "neither a scheduled run's input",
        ),
        (
            DeadLetterQueue::Schedule,
            r#"{"scheduledTime":"tomorrow"}"#,
            "is not an RFC 3339 time",
        ),
        (
            DeadLetterQueue::Schedule,
            r#"{"job":"reconcile","date":"2027-02-30"}"#,
            "not a yyyy-MM-dd calendar date",
        ),
        (
            DeadLetterQueue::Schedule,
            r#"{"job":"refund","date":"2027-02-01"}"#,
            "not a job the charger runs",
        ),
        // A charge message in the schedule's queue is not a schedule's input.
        (
            DeadLetterQueue::Schedule,
            r#"{"kind":"charge","customer":"c1","plan":"premium"}"#,
            "neither a scheduled run's input",
        ),
    ] {
        let err = revive(queue, body).unwrap_err();
        assert!(err.contains(why), "{body}: {err}");
    }
}

#[tokio::test]
async fn a_listing_shows_the_messages_and_moves_none() {
    let (ops, letters, queue) = ops();
    letters.push(
        DeadLetterQueue::Charge,
        serde_json::to_string(&charge("c1")).unwrap(),
        at("2027-01-31T02:00:00Z"),
        BTreeMap::new(),
    );
    letters.push(
        DeadLetterQueue::Schedule,
        r#"{"scheduledTime":"2027-01-31T02:00:00Z"}"#,
        at("2027-01-31T02:10:00Z"),
        scheduler_attributes(),
    );
    let view = ops.list("charge", None).await.unwrap();
    assert_eq!(view.approximate_messages, 1);
    assert_eq!(view.messages.len(), 1);
    assert_eq!(view.messages[0].body["customer"], "c1");
    assert_eq!(
        view.messages[0].redrive,
        "charge the due period of c1 / premium"
    );
    let view = ops.list("schedule", None).await.unwrap();
    assert_eq!(
        view.messages[0].attributes["ERROR_CODE"],
        "AWS.Lambda.ThrottlingException"
    );
    assert!(view.messages[0]
        .redrive
        .starts_with("plan every shard as of 2027-01-31T02:00:00"));
    // Looking twice sees the same: nothing was hidden, moved or deleted.
    assert_eq!(ops.list("schedule", None).await.unwrap().messages.len(), 1);
    assert!(queue.is_empty());
    assert_eq!(letters.bodies(DeadLetterQueue::Charge).len(), 1);
    assert_eq!(
        ops.list("charge", Some("0")).await.unwrap().messages.len(),
        0
    );
}

#[tokio::test]
async fn a_redrive_moves_what_it_understands_and_keeps_the_rest() {
    let (ops, letters, queue) = ops();
    for c in ["c1", "c2", "c3"] {
        letters.push(
            DeadLetterQueue::Charge,
            serde_json::to_string(&charge(c)).unwrap(),
            Utc::now(),
            BTreeMap::new(),
        );
    }
    let odd = letters.push(
        DeadLetterQueue::Charge,
        "not json",
        Utc::now(),
        BTreeMap::new(),
    );
    let done = ops.redrive("charge", None).await.unwrap();
    assert_eq!(done.moved, 3);
    assert_eq!(done.kept.len(), 1);
    assert_eq!(done.kept[0].id, odd);
    assert!(done.kept[0].reason.contains("not a charge queue message"));
    assert_eq!(done.remaining, 1, "the kept message stays");
    assert_eq!(
        queue.drain(),
        vec![charge("c1"), charge("c2"), charge("c3")]
    );
    assert_eq!(letters.bodies(DeadLetterQueue::Charge), vec!["not json"]);
}

#[tokio::test]
async fn a_redrive_of_the_schedules_queue_enqueues_the_missed_work() {
    let (ops, letters, queue) = ops();
    letters.push(
        DeadLetterQueue::Schedule,
        r#"{"scheduledTime":"2027-01-31T02:00:00Z"}"#,
        Utc::now(),
        scheduler_attributes(),
    );
    letters.push(
        DeadLetterQueue::Schedule,
        r#"{"job":"reconcile","scheduledTime":"2027-01-31T16:30:00Z"}"#,
        Utc::now(),
        scheduler_attributes(),
    );
    let done = ops.redrive("schedule", None).await.unwrap();
    assert_eq!((done.moved, done.kept.len(), done.remaining), (2, 0, 0));
    let work = queue.drain();
    assert_eq!(work.len(), usize::from(DUE_SHARDS) + 1);
    assert_eq!(
        work.last().unwrap(),
        &WorkMessage::Reconcile {
            date: NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
            rerun: false
        }
    );
}

#[tokio::test]
async fn a_redrive_stops_at_its_maximum() {
    let (ops, letters, queue) = ops();
    for i in 0..25 {
        letters.push(
            DeadLetterQueue::Charge,
            serde_json::to_string(&charge(&format!("c{i}"))).unwrap(),
            Utc::now(),
            BTreeMap::new(),
        );
    }
    let done = ops.redrive("charge", Some(12)).await.unwrap();
    assert_eq!((done.moved, done.remaining), (12, 13));
    assert_eq!(queue.len(), 12);
    let done = ops.redrive("charge", None).await.unwrap();
    assert_eq!((done.moved, done.remaining), (13, 0));
    assert_eq!(queue.len(), 25);
}

/// A charge queue that refuses: nothing is deleted, so nothing is lost.
struct Refusing(AtomicUsize);

#[async_trait]
impl WorkQueue for Refusing {
    async fn enqueue(&self, _: &[WorkMessage]) -> Result<(), QueueError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(QueueError("throttled".into()))
    }
}

#[tokio::test]
async fn a_refused_send_deletes_nothing() {
    let letters = Arc::new(MemoryDeadLetters::default());
    letters.push(
        DeadLetterQueue::Charge,
        serde_json::to_string(&charge("c1")).unwrap(),
        Utc::now(),
        BTreeMap::new(),
    );
    let refusing = Arc::new(Refusing(AtomicUsize::new(0)));
    let ops = DeadLetterOps {
        letters: letters.clone(),
        queue: refusing.clone(),
    };
    let err = ops.redrive("charge", None).await.unwrap_err();
    assert_eq!(err.status(), 503);
    assert_eq!(refusing.0.load(Ordering::SeqCst), 1);
    assert_eq!(letters.bodies(DeadLetterQueue::Charge).len(), 1);
}

/// Dead letters whose delete fails after the send: the work is sent, the message stays, and
/// the next redrive sends it again (a duplicate the charger absorbs; see `tests/tests`).
struct DeleteFails(MemoryDeadLetters);

#[async_trait]
impl DeadLetters for DeleteFails {
    async fn depth(&self, queue: DeadLetterQueue) -> Result<u64, DeadLetterError> {
        self.0.depth(queue).await
    }
    async fn receive(
        &self,
        queue: DeadLetterQueue,
        max: usize,
        hide: StdDuration,
    ) -> Result<Vec<DeadMessage>, DeadLetterError> {
        self.0.receive(queue, max, hide).await
    }
    async fn delete(&self, _: DeadLetterQueue, _: &[String]) -> Result<(), DeadLetterError> {
        Err(DeadLetterError("connection reset".into()))
    }
}

#[tokio::test]
async fn a_failed_delete_after_the_send_reports_unavailable_and_loses_nothing() {
    let letters = DeleteFails(MemoryDeadLetters::default());
    letters.0.push(
        DeadLetterQueue::Charge,
        serde_json::to_string(&charge("c1")).unwrap(),
        Utc::now(),
        BTreeMap::new(),
    );
    let letters = Arc::new(letters);
    let queue = Arc::new(MemoryQueue::default());
    let ops = DeadLetterOps {
        letters: letters.clone(),
        queue: queue.clone(),
    };
    let err = ops.redrive("charge", None).await.unwrap_err();
    assert_eq!(err.status(), 503);
    assert_eq!(queue.drain(), vec![charge("c1")]);
    assert_eq!(letters.0.bodies(DeadLetterQueue::Charge).len(), 1);
}

#[tokio::test]
async fn requests_are_checked() {
    let (ops, _, _) = ops();
    assert_eq!(ops.list("charges", None).await.unwrap_err().status(), 404);
    assert_eq!(
        ops.list("charge", Some("11")).await.unwrap_err().status(),
        400
    );
    assert_eq!(
        ops.list("charge", Some("x")).await.unwrap_err().status(),
        400
    );
    assert_eq!(
        ops.redrive("charge", Some(0)).await.unwrap_err().status(),
        400
    );
    assert_eq!(
        ops.redrive("charge", Some(101)).await.unwrap_err().status(),
        400
    );
    assert_eq!(ops.redrive("dlq", None).await.unwrap_err().status(), 404);
}
