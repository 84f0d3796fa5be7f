//! The scheduler with an injected clock: one workflow per occurrence across many ticks,
//! restarts and concurrent instances; catch-up after downtime; NCRONTAB semantics.

mod common;
use common::StaticToken;

use std::sync::Arc;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc, Weekday};
use serde_json::json;
use sqlvm_backup::embedded::sqlite::SqliteBackend;
use sqlvm_backup::scheduler::{BackupPlan, ScheduleError, Scheduler, SchedulerConfig, parse_schedule};
use sqlvm_backup_shared::arm::ArmClient;
use sqlvm_backup_shared::engine::{Engine, EngineOptions};
use sqlvm_backup_shared::ports::ListFilter;
use sqlvm_backup_shared::workflow::state::{BackupType, WorkflowInput, WorkflowState};

const VAULT: &str =
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-sql/providers/Microsoft.RecoveryServices/vaults/v1";

fn engine() -> Arc<Engine> {
    let backend = Arc::new(SqliteBackend::in_memory().unwrap());
    let arm = ArmClient::new("http://127.0.0.1:9", Arc::new(StaticToken("static-token".into())), None).unwrap();
    Arc::new(Engine::new(backend, arm, EngineOptions::default()))
}

fn plan(name: &str, schedule: &str, catch_up: bool) -> BackupPlan {
    BackupPlan {
        name: name.into(),
        schedule: schedule.into(),
        vault_id: VAULT.into(),
        items: vec![],
        databases: Default::default(),
        vms: vec![],
        backup_type: BackupType::Log,
        retention_days: None,
        catch_up,
    }
}

fn scheduler(engine: &Arc<Engine>, plans: Vec<BackupPlan>) -> Scheduler {
    Scheduler::new(engine.clone(), SchedulerConfig { plans, tick_seconds: 30 }).unwrap()
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

async fn workflows(engine: &Engine) -> Vec<WorkflowState> {
    engine.backend().list(&ListFilter { limit: 10_000, ..Default::default() }).await.unwrap()
}

#[tokio::test]
async fn every_minute_fires_once_per_occurrence() {
    let e = engine();
    let s = scheduler(&e, vec![plan("logs", "0 * * * * *", true)]);
    let start = at(2026, 3, 2, 10, 0, 0);
    let mut fired = vec![];
    // Three minutes, ticked every 5 seconds: 36 ticks, three occurrences.
    for i in 0..36 {
        fired.extend(s.tick(start + chrono::Duration::seconds(5 * i)).await);
    }
    let occurrences: Vec<_> = fired.iter().map(|f| f.occurrence).collect();
    assert_eq!(occurrences, vec![start, at(2026, 3, 2, 10, 1, 0), at(2026, 3, 2, 10, 2, 0)]);
    assert!(fired.iter().all(|f| f.created && f.plan == "logs"));
    let wfs = workflows(&e).await;
    assert_eq!(wfs.len(), 3);
    assert!(wfs.iter().all(|w| w.origin == "schedule:logs"));
    assert!(wfs.iter().all(|w| matches!(&w.input, WorkflowInput::Backup(b) if b.backup_type == BackupType::Log && b.vault_id == VAULT)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_or_concurrent_instances_never_fire_an_occurrence_twice() {
    let e = engine();
    let p = plan("logs", "0 * * * * *", true);
    let first = scheduler(&e, vec![p.clone()]);
    assert_eq!(first.tick(at(2026, 3, 2, 10, 0, 5)).await.len(), 1);

    // "Restart": a new instance on the same backend, same minute.
    let second = scheduler(&e, vec![p.clone()]);
    for s in [5, 10, 40, 59] {
        assert!(second.tick(at(2026, 3, 2, 10, 0, s)).await.is_empty(), "refired at :{s}");
    }
    // Next minute: whichever instance ticks first fires it, the other does not.
    assert_eq!(second.tick(at(2026, 3, 2, 10, 1, 2)).await.len(), 1);
    assert!(first.tick(at(2026, 3, 2, 10, 1, 3)).await.is_empty());

    // Several instances ticking the same occurrence at the same time: exactly one fires.
    let instances: Vec<_> = (0..8).map(|_| Arc::new(scheduler(&e, vec![p.clone()]))).collect();
    let now = at(2026, 3, 2, 10, 2, 1);
    let handles: Vec<_> = instances
        .iter()
        .map(|s| {
            tokio::spawn({
                let s = s.clone();
                async move { s.tick(now).await }
            })
        })
        .collect();
    let mut fired = 0;
    for h in handles {
        fired += h.await.unwrap().len();
    }
    assert_eq!(fired, 1);
    assert_eq!(workflows(&e).await.len(), 3);
    // And every reported firing made a new workflow.
    assert!(first.tick(at(2026, 3, 2, 10, 3, 0)).await.iter().all(|f| f.created));
}

#[tokio::test]
async fn crash_between_submit_and_claim_is_recovered_without_a_second_workflow() {
    let e = engine();
    let p = plan("nightly", "0 0 2 * * *", true);
    let occurrence = at(2026, 3, 2, 2, 0, 0);
    // A previous process submitted the occurrence and stopped before claiming it.
    let before = e.submit(p.input(), "schedule:nightly", Some(&p.occurrence_key(occurrence))).await.unwrap();
    assert!(before.created);

    // The restarted scheduler finds the same workflow (not reported as a new firing) and records
    // the claim.
    let s = scheduler(&e, vec![p.clone()]);
    assert!(s.tick(at(2026, 3, 2, 2, 0, 20)).await.is_empty());
    let wfs = workflows(&e).await;
    assert_eq!(wfs.len(), 1);
    assert_eq!(wfs[0].id, before.id);
    let claim_ttl = std::time::Duration::from_secs(3600);
    assert!(!e.backend().claim(&p.occurrence_key(occurrence), claim_ttl, at(2026, 3, 2, 2, 1, 0)).await.unwrap());
    assert!(scheduler(&e, vec![p]).tick(at(2026, 3, 2, 2, 0, 40)).await.is_empty());
}

#[tokio::test]
async fn after_a_gap_only_the_most_recent_missed_occurrence_fires_once() {
    let e = engine();
    let p = plan("hourly", "0 0 * * * *", true);
    let s = scheduler(&e, vec![p.clone()]);
    assert_eq!(s.tick(at(2026, 3, 2, 10, 0, 5)).await.len(), 1);

    // Down from 10:00:05 to 20:30: ten occurrences (11:00 .. 20:00) missed.
    let fired = s.tick(at(2026, 3, 2, 20, 30, 0)).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].occurrence, at(2026, 3, 2, 20, 0, 0));
    assert!(s.tick(at(2026, 3, 2, 20, 30, 30)).await.is_empty());
    // A restart later in the same hour does not fire it again.
    assert!(scheduler(&e, vec![p]).tick(at(2026, 3, 2, 20, 45, 0)).await.is_empty());
    assert_eq!(s.tick(at(2026, 3, 2, 21, 0, 1)).await.len(), 1);
    assert_eq!(workflows(&e).await.len(), 3);
}

#[tokio::test]
async fn without_catch_up_missed_occurrences_do_not_fire() {
    let e = engine();
    let p = plan("hourly", "0 0 * * * *", false);
    let s = scheduler(&e, vec![p.clone()]);
    assert_eq!(s.tick(at(2026, 3, 2, 10, 0, 5)).await.len(), 1);
    assert!(s.tick(at(2026, 3, 2, 20, 30, 0)).await.is_empty());
    // A fresh instance started late does not fire the missed one either.
    assert!(scheduler(&e, vec![p.clone()]).tick(at(2026, 3, 2, 20, 59, 0)).await.is_empty());
    // The next occurrence, on time, fires.
    let fired = s.tick(at(2026, 3, 2, 21, 0, 10)).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].occurrence, at(2026, 3, 2, 21, 0, 0));
    assert_eq!(workflows(&e).await.len(), 2);
}

#[tokio::test]
async fn catch_up_is_bounded_to_seven_days() {
    let e = engine();
    // Yearly on Jan 1st; ticking in March finds an occurrence two months old.
    let s = scheduler(&e, vec![plan("yearly", "0 0 0 1 1 *", true)]);
    assert!(s.tick(at(2026, 3, 2, 10, 0, 0)).await.is_empty());
    assert!(workflows(&e).await.is_empty());
}

#[test]
fn config_parses_with_defaults_and_rejects_unknown_fields() {
    let cfg: SchedulerConfig = serde_json::from_value(json!({
        "plans": [{ "name": "nightly", "schedule": "0 0 2 * * *", "vaultId": VAULT, "backupType": "Full", "retentionDays": 45 }]
    }))
    .unwrap();
    assert_eq!(cfg.tick_seconds, 30);
    assert!(cfg.plans[0].catch_up);
    assert_eq!(cfg.plans[0].retention_days, Some(45));
    cfg.validate().unwrap();

    let err = serde_json::from_value::<SchedulerConfig>(json!({
        "plans": [{ "name": "n", "schedule": "0 0 2 * * *", "vaultId": VAULT, "backupType": "Full", "timezone": "CET" }]
    }))
    .unwrap_err();
    assert!(err.to_string().contains("timezone"), "{err}");
}

#[test]
fn bad_plans_fail_validation_with_a_clear_error() {
    let check = |p: BackupPlan| SchedulerConfig { plans: vec![p], tick_seconds: 30 }.validate();
    for bad in ["not a cron", "0 0 25 * * *", "0 61 * * * *", "* * *", "0 0 0 1 1 * 2027", "0 0 0 30 2 *", "0 0 9 * * MOO"] {
        match check(plan("p", bad, true)) {
            Err(ScheduleError::BadSchedule { plan, schedule, why }) => {
                assert_eq!(plan, "p");
                assert_eq!(schedule, bad);
                assert!(!why.is_empty());
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    let mut p = plan("p", "0 0 2 * * *", true);
    p.vault_id = "not-a-vault".into();
    assert!(matches!(check(p), Err(ScheduleError::BadPlan { .. })));
    let mut p = plan("p", "0 0 2 * * *", true);
    p.retention_days = Some(30); // not allowed for Log
    let err = check(p).unwrap_err();
    assert!(err.to_string().contains("retention"), "{err}");
    let dup = SchedulerConfig { plans: vec![plan("a", "0 0 2 * * *", true), plan("A", "0 0 3 * * *", true)], tick_seconds: 30 };
    assert!(dup.validate().unwrap_err().to_string().contains("same name"));
    assert!(SchedulerConfig { plans: vec![], tick_seconds: 0 }.validate().is_err());
    let e = engine();
    assert!(Scheduler::new(e, SchedulerConfig { plans: vec![plan("x", "bad", true)], tick_seconds: 30 }).is_err());
}

fn next_n(expr: &str, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let cron = parse_schedule(expr).unwrap();
    let mut out = vec![];
    let mut t = from;
    for _ in 0..n {
        t = cron.find_next_occurrence(&t, false).unwrap();
        out.push(t);
    }
    out
}

#[test]
fn ncrontab_semantics() {
    let sunday = at(2026, 3, 1, 0, 0, 0);
    assert_eq!(sunday.weekday(), Weekday::Sun);

    // Mon–Fri 09:30 UTC: 1-5 is Monday to Friday.
    let weekdays = next_n("0 30 9 * * 1-5", sunday, 10);
    assert!(weekdays.iter().all(|t| t.hour() == 9 && t.minute() == 30 && t.second() == 0));
    assert!(weekdays.iter().all(|t| !matches!(t.weekday(), Weekday::Sat | Weekday::Sun)));
    assert_eq!(weekdays[0], at(2026, 3, 2, 9, 30, 0));
    assert_eq!(weekdays[5], at(2026, 3, 9, 9, 30, 0));
    // Five fields: the same schedule without seconds; names work too.
    assert_eq!(next_n("30 9 * * 1-5", sunday, 10), weekdays);
    assert_eq!(next_n("0 30 9 * * MON-FRI", sunday, 10), weekdays);

    // Day-of-week 0 is Sunday.
    let sundays = next_n("0 0 2 * * 0", sunday, 4);
    assert!(sundays.iter().all(|t| t.weekday() == Weekday::Sun && t.hour() == 2));

    // Day-of-month and day-of-week both restricted: both must match (Friday the 13th).
    let f13 = next_n("0 0 0 13 * 5", sunday, 3);
    assert!(f13.iter().all(|t| t.day() == 13 && t.weekday() == Weekday::Fri), "{f13:?}");

    // The seconds field is honoured.
    assert_eq!(next_n("*/15 * * * * *", sunday, 2), vec![at(2026, 3, 1, 0, 0, 15), at(2026, 3, 1, 0, 0, 30)]);
}

#[tokio::test]
async fn weekday_plan_fires_only_on_weekdays() {
    let e = engine();
    let s = scheduler(&e, vec![plan("weekday", "0 30 9 * * 1-5", false)]);
    // Saturday and Sunday 09:30: nothing due (Friday's occurrence is a day old, no catch-up).
    assert!(s.tick(at(2026, 3, 7, 9, 30, 10)).await.is_empty());
    assert!(s.tick(at(2026, 3, 8, 9, 30, 10)).await.is_empty());
    // Monday 09:30 fires.
    let fired = s.tick(at(2026, 3, 9, 9, 30, 10)).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].occurrence, at(2026, 3, 9, 9, 30, 0));
}

#[tokio::test]
async fn run_stops_on_shutdown() {
    let e = engine();
    let s = Arc::new(scheduler(&e, vec![plan("logs", "0 * * * * *", true)]));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(s.run(async move {
        let _ = rx.await;
    }));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), task).await.unwrap().unwrap();
}
