//! The charger in the dev stack: "run the charger now" plans and charges everything due, the
//! way the scheduled Lambda and its SQS workers would, and "skip ahead" moves the stack's clock
//! so that the next period (or a dunning retry, or a reconciliation) comes due.

use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use oen_pay::charging::{self, WorkContext, WorkOutcome};
use oen_pay::chrono::Duration;
use oen_pay::deadletter::DeadLetterQueue;
use oen_pay::outbox::{self, RelayLimits};
use oen_pay::queue::WorkMessage;
use serde::Deserialize;

use crate::demo::Demo;
use crate::page::escape;

fn to_state_page() -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/demo/state"));
    r
}

/// `POST /demo/charge`: one scheduled run, worked to the end, with the outbox relay the
/// scheduled Lambda runs too.
pub(crate) async fn run(State(demo): State<Arc<Demo>>) -> Response {
    let deps = demo.adapters.charge_deps();
    let now = deps.clock.now();
    let mut lines = vec![format!(
        "Run at {} (stack clock).",
        now.format("%Y-%m-%d %H:%M UTC")
    )];
    if let Err(e) = charging::schedule(&deps, now).await {
        lines.push(format!("Planning failed: {e}"));
    }
    let ctx = WorkContext {
        owner: "oen-dev".into(),
        deadline: None,
    };
    let mut handled = 0;
    // Bounded so that a bug can never spin forever: far more than a demo ever has.
    while let Some(message) = demo.adapters.queue.pop() {
        handled += 1;
        if handled > 10_000 {
            lines.push("Stopped after 10 000 messages.".into());
            break;
        }
        match charging::handle(&deps, &message, &ctx).await {
            Ok(WorkOutcome::Planned { .. }) => {}
            Ok(outcome) => lines.push(format!("{} → {}", subject(&message), describe(&outcome))),
            Err(e) => {
                // SQS would try it again, and move it to the dead-letter queue after five
                // failures; the dev stack moves it at once, so that `oenpay dlq` has it.
                let body = oen_pay::serde_json::to_string(&message).unwrap_or_default();
                demo.adapters.dead_letters.push(
                    DeadLetterQueue::Charge,
                    body,
                    now,
                    Default::default(),
                );
                lines.push(format!(
                    "{} → failed, moved to the dead-letter queue (oenpay dlq list): {e}",
                    subject(&message)
                ))
            }
        }
    }
    if lines.len() == 1 {
        lines.push("Nothing was due.".into());
    }
    match outbox::relay(&deps, &RelayLimits::default()).await {
        Ok(relayed) if relayed.delivered + relayed.failed > 0 => lines.push(format!(
            "Outbox relay: {} pending events published, {} left for the next run.",
            relayed.delivered, relayed.failed
        )),
        Ok(_) => {}
        Err(e) => lines.push(format!("Outbox relay failed: {e}")),
    }
    demo.last_run.set(lines);
    to_state_page()
}

fn subject(message: &WorkMessage) -> String {
    match message {
        WorkMessage::Charge { customer, plan } => format!("{customer} / {plan}"),
        WorkMessage::Plan { shard, .. } => format!("planning shard {shard}"),
        WorkMessage::PlanCharges { shard, .. } => {
            format!("planning one-off charges, shard {shard}")
        }
        WorkMessage::ReconcileCharge { charge } => format!("one-off charge {charge}"),
        WorkMessage::PlanNotices { shard, .. } => {
            format!("planning renewal notices, shard {shard}")
        }
        WorkMessage::Notice { customer, plan } => format!("renewal notice {customer} / {plan}"),
        WorkMessage::Reconcile { date, .. } => format!("reconciliation of {date}"),
    }
}

fn describe(outcome: &WorkOutcome) -> String {
    let at = |t: &oen_pay::chrono::DateTime<oen_pay::chrono::Utc>| {
        t.format("%Y-%m-%d %H:%M UTC").to_string()
    };
    match outcome {
        WorkOutcome::Planned { enqueued, .. } => format!("{enqueued} due"),
        WorkOutcome::Skipped(why) => format!("skipped: {why}"),
        WorkOutcome::Paid {
            transaction,
            charged: true,
        } => format!("paid ({transaction})"),
        WorkOutcome::Paid {
            transaction,
            charged: false,
        } => format!("reconciled as paid, not charged again ({transaction})"),
        WorkOutcome::SoftDeclined { retry_at } => {
            format!("soft decline: past due, retry at {}", at(retry_at))
        }
        WorkOutcome::HardDeclined => "hard decline: waiting for a new card".to_owned(),
        WorkOutcome::Canceled => "canceled".to_owned(),
        WorkOutcome::Unknown { reconcile_at } => {
            format!("result unknown: reconcile at {}", at(reconcile_at))
        }
        WorkOutcome::NotSent => "Oen unreachable: will retry".to_owned(),
        WorkOutcome::ConfigError => {
            "configuration error: nothing changed for the customer".to_owned()
        }
        WorkOutcome::Declined { code } => format!("reconciled as declined ({code})"),
        WorkOutcome::Released => "reconciled: nothing was charged".to_owned(),
        WorkOutcome::Noticed { period, charge_at } => {
            format!(
                "renewal notice for period {period}, charged {}",
                at(charge_at)
            )
        }
        WorkOutcome::Reconciled { date } => format!("reconciliation of {date} complete"),
    }
}

#[derive(Deserialize)]
pub(crate) struct Skip {
    days: i64,
}

/// `POST /demo/skip`: the stack's clock jumps ahead; Oen's pending results settle.
pub(crate) async fn skip(
    State(demo): State<Arc<Demo>>,
    form: Result<Form<Skip>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(Skip { days })) = form else {
        return oen_pay::web::html_error(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "days must be a whole number",
            None,
        );
    };
    if !(1..=400).contains(&days) {
        return oen_pay::web::html_error(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "days must be 1 to 400",
            None,
        );
    }
    demo.adapters.clock.skip(Duration::days(days));
    // Time passes for Oen too: C026 charges settle. (Oen's testing environment keeps its own
    // time.)
    if let Some(sim) = &demo.sim {
        sim.settle_pending();
    }
    to_state_page()
}

/// The charger's part of the inspection page.
pub(crate) fn section(demo: &Demo) -> String {
    let offset = demo.adapters.clock.offset();
    let last: String = demo
        .last_run
        .lines()
        .iter()
        .map(|l| format!("<li>{}</li>", escape(l)))
        .collect();
    let last = if last.is_empty() {
        "<p class=\"muted\">The charger has not run yet.</p>".to_owned()
    } else {
        format!("<ul>{last}</ul>")
    };
    format!(
        "<section aria-labelledby=\"charger\"><h2 id=\"charger\">Charger</h2>\
         <p>The stack's clock is {ahead} ahead of this machine's. Subscriptions are charged when \
         their next action is due.</p>\
         <form method=\"post\" action=\"/demo/charge\"><button>Run the charger now</button></form>\
         <form method=\"post\" action=\"/demo/skip\"><input type=\"hidden\" name=\"days\" value=\"1\">\
         <button>Skip ahead a day</button></form>\
         <form method=\"post\" action=\"/demo/skip\"><input type=\"hidden\" name=\"days\" value=\"31\">\
         <button>Skip ahead a month</button></form>\
         <section aria-labelledby=\"last-run\"><h3 id=\"last-run\">Last run</h3>{last}</section>\
         </section>",
        ahead = match offset.num_days() {
            1 => "1 day".to_owned(),
            days => format!("{days} days"),
        },
    )
}
