//! A worker process killed with SIGKILL after Oen committed the charge and before we wrote it
//! down: the next run reconciles the period to paid, without a second charge.

use std::process::Child;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use oen_pay::charging::{self, WorkOutcome};
use oen_pay::domain::{CustomerId, OrderId, PlanId};
use oen_pay::store::{PeriodState, StoreExt};
use oen_pay_integration::stack::{stack, worker};
use oen_sim::{cards, ForceTarget, ForcedOutcome};

/// Kills the child when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_reconciled_to_paid_without_a_second_charge() {
    let s = stack().await;
    s.clock.set(Utc::now());
    s.bind("cust-killed", "premium", cards::SUCCESS).await;
    let sub = s.sub("cust-killed", "premium").await;
    let order = OrderId::for_period(&sub.id, 0);

    // Oen commits the charge, then holds its answer long enough for the kill.
    s.sim.set_gateway_timeout_delay(StdDuration::from_secs(60));
    s.sim.force_next(
        ForceTarget::AnyCharge,
        ForcedOutcome::GatewayTimeoutAfterCommit,
    );
    let child = s
        .charge_worker(
            env!("CARGO_BIN_EXE_charge_worker"),
            "cust-killed",
            "premium",
        )
        .spawn()
        .expect("the worker binary starts");
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while s
        .ledger_for(&order)
        .iter()
        .all(|status| status != "charged")
    {
        assert!(Instant::now() < deadline, "the worker never reached Oen");
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the worker exited before Oen answered"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    // SIGKILL: no destructor, no write-back.
    child.0.kill().unwrap();
    assert!(!child.0.wait().unwrap().success());
    // The worker claimed on its own (system) clock: its lease ends 90 s after that, however long
    // it took to start on a loaded machine.
    let PeriodState::Charging { lease_until, .. } = s.period_state(&sub, 0).await else {
        panic!("the dead worker left its claim")
    };

    let (customer, plan) = (
        CustomerId::parse("cust-killed").unwrap(),
        PlanId::parse("premium").unwrap(),
    );
    let early = charging::charge_now(&s.deps, &customer, &plan, &worker("survivor"))
        .await
        .unwrap();
    assert_eq!(
        early,
        WorkOutcome::Skipped("another worker holds the lease")
    );
    s.clock.set(lease_until + Duration::seconds(1));
    let outcome = charging::charge_now(&s.deps, &customer, &plan, &worker("survivor"))
        .await
        .unwrap();
    assert!(
        matches!(outcome, WorkOutcome::Paid { charged: false, .. }),
        "{outcome:?}"
    );
    assert_eq!(s.ledger_for(&order), ["charged"], "exactly one charge");
    assert_eq!(
        s.deps
            .store
            .subscription(&customer, &plan)
            .await
            .unwrap()
            .unwrap()
            .value
            .period,
        1
    );
    s.assert_ledger_agrees(&[("cust-killed", "premium")]).await;
}
