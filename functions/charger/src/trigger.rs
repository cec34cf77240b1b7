//! What invoked the charger, read from the payload. Every trigger it has sends its own shape:
//! - SQS batches of work (`Records`);
//! - the template's EventBridge Scheduler schedule, whose `Input` is
//!   `{"scheduledTime":"<aws.scheduler.scheduled-time>"}`, rendered by Scheduler to an RFC 3339
//!   time (without an `Input`, Scheduler sends no time at all);
//! - an EventBridge rule's scheduled event (`detail-type: "Scheduled Event"` with its `time`);
//! - a person's manual `{}`, meaning now;
//! - the daily reconciliation's schedule, whose `Input` names the job:
//!   `{"job":"reconcile","scheduledTime":"<aws.scheduler.scheduled-time>"}` reconciles the Taipei
//!   day before the scheduled time (and does nothing when that day's report is complete);
//! - a person's `{"job":"reconcile","date":"2026-11-29"}`, which reconciles that Taipei day
//!   (continuing an unfinished run, or replacing a complete report with a new run).
//!
//! A job payload takes `job`, and exactly one of `scheduledTime` and `date`, nothing else.
//!
//! Anything else is refused: planning for a time guessed from an unknown payload could charge
//! on the wrong day.

use aws_lambda_events::event::sqs::SqsEvent;
use oen_pay::chrono::{DateTime, Utc};
use oen_pay::reconcile::{self, ReconcileJob};
use serde_json::Value;

/// The payload shapes the charger accepts, as said in its refusal.
pub const ACCEPTED_SHAPES: &str = "an SQS batch ({\"Records\":[…]}), an EventBridge Scheduler \
     input ({\"scheduledTime\":\"<RFC 3339 time>\"}), an EventBridge rule's scheduled event \
     (\"detail-type\":\"Scheduled Event\" with an RFC 3339 \"time\"), {} to plan now, or the \
     reconciliation job ({\"job\":\"reconcile\",\"scheduledTime\":\"<RFC 3339 time>\"} or \
     {\"job\":\"reconcile\",\"date\":\"yyyy-MM-dd\"})";

/// The Scheduler context attribute that the template's schedule `Input` carries.
pub const SCHEDULED_TIME_ATTRIBUTE: &str = "<aws.scheduler.scheduled-time>";

#[derive(Debug)]
pub enum Trigger {
    /// Planning and charge messages from the work queue.
    Batch(SqsEvent),
    /// A scheduled run: plan what is due at this time, or now when none is given (`{}`).
    Schedule(Option<DateTime<Utc>>),
    /// The daily reconciliation of one Taipei day.
    Reconcile(ReconcileJob),
}

/// Why a payload is none of the accepted shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised event ({reason}); the charger accepts {ACCEPTED_SHAPES}")]
pub struct UnrecognisedEvent {
    pub reason: String,
}

impl UnrecognisedEvent {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Reads a payload as one of the accepted shapes.
pub fn parse(payload: Value) -> Result<Trigger, UnrecognisedEvent> {
    let Value::Object(fields) = &payload else {
        return Err(UnrecognisedEvent::new("not a JSON object"));
    };
    if fields.is_empty() {
        return Ok(Trigger::Schedule(None));
    }
    if fields.contains_key("job") {
        return reconcile_job(fields).map(Trigger::Reconcile);
    }
    if fields.contains_key("Records") {
        return serde_json::from_value(payload)
            .map(Trigger::Batch)
            .map_err(|e| UnrecognisedEvent::new(format!("Records is not an SQS batch: {e}")));
    }
    if let Some(time) = fields.get("scheduledTime") {
        return rfc3339("scheduledTime", time).map(|t| Trigger::Schedule(Some(t)));
    }
    match fields.get("detail-type") {
        Some(Value::String(kind)) if kind == "Scheduled Event" => {
            let time = fields
                .get("time")
                .ok_or_else(|| UnrecognisedEvent::new("a scheduled event without a time"))?;
            rfc3339("time", time).map(|t| Trigger::Schedule(Some(t)))
        }
        Some(other) => Err(UnrecognisedEvent::new(format!(
            "an EventBridge event of detail-type {other}"
        ))),
        None => Err(UnrecognisedEvent::new(
            "no Records, job, scheduledTime or detail-type",
        )),
    }
}

/// `{"job":"reconcile"}` with exactly one of `scheduledTime` and `date` (see
/// [`reconcile::job_from_input`]).
fn reconcile_job(
    fields: &serde_json::Map<String, Value>,
) -> Result<ReconcileJob, UnrecognisedEvent> {
    reconcile::job_from_input(fields).map_err(UnrecognisedEvent::new)
}

fn rfc3339(field: &str, value: &Value) -> Result<DateTime<Utc>, UnrecognisedEvent> {
    reconcile::rfc3339_field(field, value).map_err(UnrecognisedEvent::new)
}

#[cfg(test)]
mod tests {
    use oen_pay::chrono::NaiveDate;
    use serde_json::json;

    use super::*;

    fn scheduled_at(payload: Value) -> Option<DateTime<Utc>> {
        match parse(payload) {
            Ok(Trigger::Schedule(at)) => at,
            other => panic!("not a scheduled run: {other:?}"),
        }
    }

    fn at(t: &str) -> Option<DateTime<Utc>> {
        Some(DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc))
    }

    #[test]
    fn a_scheduler_input_plans_for_its_scheduled_time() {
        assert_eq!(
            scheduled_at(json!({"scheduledTime": "2027-01-31T02:00:00Z"})),
            at("2027-01-31T02:00:00Z")
        );
    }

    #[test]
    fn an_eventbridge_rules_scheduled_event_plans_for_its_time() {
        let event = json!({
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2027-01-31T02:00:00+08:00",
            "region": "ap-northeast-1",
            "resources": ["arn:aws:events:ap-northeast-1:123456789012:rule/oen-pay-charger"],
            "detail": {}
        });
        assert_eq!(scheduled_at(event), at("2027-01-30T18:00:00Z"));
    }

    #[test]
    fn an_empty_object_plans_now() {
        assert_eq!(scheduled_at(json!({})), None);
    }

    #[test]
    fn an_sqs_batch_is_work() {
        let batch = json!({"Records": [{"messageId": "m-1", "body": "{}"}]});
        assert!(matches!(parse(batch), Ok(Trigger::Batch(b)) if b.records.len() == 1));
    }

    #[test]
    fn every_sample_charger_event_is_accepted() {
        let events = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
        let mut samples = 0;
        for entry in std::fs::read_dir(events).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("charger-") && name.ends_with(".json") {
                let payload = serde_json::from_str(&std::fs::read_to_string(&path).unwrap());
                assert!(parse(payload.unwrap()).is_ok(), "{name}");
                samples += 1;
            }
        }
        assert_eq!(
            samples, 6,
            "charger-{{schedule,rule,now,sqs,reconcile,reconcile-date}}.json"
        );
    }

    fn job_of(payload: Value) -> ReconcileJob {
        match parse(payload) {
            Ok(Trigger::Reconcile(job)) => job,
            other => panic!("not a reconcile job: {other:?}"),
        }
    }

    fn day(d: &str) -> NaiveDate {
        NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_reconcile_schedule_reconciles_the_taipei_day_before_its_time() {
        // 00:30 on 30 November in Taipei.
        let job = job_of(json!({"job": "reconcile", "scheduledTime": "2026-11-29T16:30:00Z"}));
        assert_eq!(job.date, day("2026-11-29"));
        assert_eq!(job.mode, oen_pay::reconcile::RunMode::Scheduled);
        // Scheduler renders the time with the schedule's zone offset too.
        let job = job_of(json!({"job": "reconcile", "scheduledTime": "2026-11-30T00:30:00+08:00"}));
        assert_eq!(job.date, day("2026-11-29"));
    }

    #[test]
    fn a_manual_reconcile_names_its_day_and_reruns_it() {
        let job = job_of(json!({"job": "reconcile", "date": "2026-11-29"}));
        assert_eq!(job, ReconcileJob::rerun(day("2026-11-29")));
    }

    #[test]
    fn malformed_reconcile_jobs_are_refused_precisely() {
        for (payload, reason) in [
            (
                json!({"job": "charge"}),
                "job \"charge\" is not a job the charger runs (only \"reconcile\")",
            ),
            (
                json!({"job": 1}),
                "job 1 is not a job the charger runs (only \"reconcile\")",
            ),
            (
                json!({"job": "reconcile"}),
                "a reconcile job without scheduledTime or date",
            ),
            (
                json!({"job": "reconcile", "date": "2026-11-29", "scheduledTime": "2026-11-29T16:30:00Z"}),
                "a reconcile job takes scheduledTime or date, not both",
            ),
            (
                json!({"job": "reconcile", "day": "2026-11-29"}),
                "a reconcile job takes scheduledTime or date, not \"day\"",
            ),
            (
                json!({"job": "reconcile", "date": "2026/11/29"}),
                "date \"2026/11/29\" is not a yyyy-MM-dd calendar date",
            ),
            (
                json!({"job": "reconcile", "date": "2026-02-30"}),
                "date \"2026-02-30\" is not a yyyy-MM-dd calendar date",
            ),
            (
                json!({"job": "reconcile", "date": "2026-1-29"}),
                "date \"2026-1-29\" is not a yyyy-MM-dd calendar date",
            ),
            (
                json!({"job": "reconcile", "scheduledTime": SCHEDULED_TIME_ATTRIBUTE}),
                "scheduledTime \"<aws.scheduler.scheduled-time>\" is not an RFC 3339 time",
            ),
        ] {
            let err = parse(payload.clone()).unwrap_err();
            assert_eq!(err.reason, reason, "{payload}");
            assert!(err.to_string().contains(ACCEPTED_SHAPES), "{err}");
        }
    }

    #[test]
    fn anything_else_is_refused_naming_the_accepted_shapes() {
        for (payload, reason) in [
            (
                json!({"hello": "world"}),
                "no Records, job, scheduledTime or detail-type",
            ),
            (json!([]), "not a JSON object"),
            (json!("2027-01-31T02:00:00Z"), "not a JSON object"),
            (
                json!({"scheduledTime": SCHEDULED_TIME_ATTRIBUTE}),
                "scheduledTime \"<aws.scheduler.scheduled-time>\" is not an RFC 3339 time",
            ),
            (
                json!({"detail-type": "Scheduled Event"}),
                "a scheduled event without a time",
            ),
            (
                json!({"detail-type": "Object Created", "time": "2027-01-31T02:00:00Z"}),
                "an EventBridge event of detail-type \"Object Created\"",
            ),
            (json!({"Records": 3}), "Records is not an SQS batch"),
        ] {
            let err = parse(payload.clone()).unwrap_err();
            assert!(err.reason.starts_with(reason), "{payload}: {err}");
            let message = err.to_string();
            assert!(message.starts_with("unrecognised event ("), "{message}");
            assert!(message.contains(ACCEPTED_SHAPES), "{message}");
        }
    }
}
