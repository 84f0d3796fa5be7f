//! Timed backups: plans with an NCRONTAB schedule (as an Azure Functions timer writes it), each
//! occurrence turned into one backup workflow, exactly once even across restarts and scale-out.
//!
//! # How an occurrence fires exactly once
//!
//! There is no local state file. On every tick, for each plan, the scheduler takes the latest
//! occurrence at or before `now` (never an older one: missed occurrences are not replayed one by
//! one) and, if it should fire, does two things in this order:
//!
//! 1. `engine.submit(.., key = "plan:{name}:{occurrence}")`. The workflow id is derived from the
//!    key and the backend's `start` is atomic, so however many processes (or restarts) submit
//!    the same occurrence, exactly one workflow exists for it and exactly one submit sees
//!    `created: true`. That submit, and only that one, is reported as a [`FiredPlan`].
//! 2. `backend.claim("plan:{name}:{occurrence}", 30 days)`: the durable record that the occurrence
//!    was handled (for operators and other backends' bookkeeping; correctness rests on step 1).
//!
//! Why submit first: had the claim come first, a crash between the claim and the submit would
//! lose the occurrence for good (the claim says "done", no workflow exists). With submit first,
//! a crash between the two leaves a workflow and no claim; the next tick (in this or another
//! process) submits again, gets the same workflow back (`created: false`, not reported as fired),
//! and records the claim. Concurrent instances race the same way and still make one workflow.
//! This relies on workflow records outliving the 7-day look-back below (a backend that purged a
//! workflow sooner would let a late catch-up tick submit the occurrence again).
//!
//! # Catch-up
//!
//! An occurrence is *on time* when `now` is within a grace period after it (two ticks, at least
//! one minute). An occurrence found later than that was missed (the process was down, or the
//! plan is new); it fires once only when the plan has `catchUp` (default) and it is at most 7 days
//! old. Either way only the most recent occurrence is considered, so after a gap of ten
//! occurrences one backup runs, not ten. Schedules firing more often than the tick interval fire at
//! most once per tick.
//!
//! All schedules are UTC. Croner is configured as the Functions host parses NCRONTAB: six fields
//! `{second} {minute} {hour} {day} {month} {day-of-week}` (five fields accepted, without seconds),
//! day-of-week 0 = Sunday, and when both day-of-month and day-of-week are restricted both must
//! match.

use chrono::{DateTime, SecondsFormat, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlvm_backup_shared::engine::{self, Engine, SubmitError};
use sqlvm_backup_shared::workflow::state::{BackupInput, BackupType, DatabaseFilter, ItemRef, WorkflowInput};

/// How long an occurrence's claim is kept.
pub const CLAIM_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The oldest missed occurrence a catch-up fires.
pub const MAX_CATCH_UP: Duration = Duration::from_secs(7 * 24 * 3600);

fn default_true() -> bool {
    true
}

fn default_tick() -> u64 {
    30
}

/// One scheduled backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupPlan {
    /// Unique among the plans; part of the idempotency key of each occurrence.
    pub name: String,
    /// NCRONTAB in UTC, six fields as Azure Functions writes them (`0 0 2 * * *`) or five.
    pub schedule: String,
    pub vault_id: String,
    #[serde(default)]
    pub items: Vec<ItemRef>,
    #[serde(default)]
    pub databases: DatabaseFilter,
    #[serde(default)]
    pub vms: Vec<String>,
    pub backup_type: BackupType,
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Fire the most recent missed occurrence once after downtime (default true).
    #[serde(default = "default_true")]
    pub catch_up: bool,
}

impl BackupPlan {
    /// The workflow input one occurrence submits.
    pub fn input(&self) -> WorkflowInput {
        WorkflowInput::Backup(BackupInput {
            vault_id: self.vault_id.clone(),
            items: self.items.clone(),
            databases: self.databases.clone(),
            vms: self.vms.clone(),
            backup_type: self.backup_type,
            retention_days: self.retention_days,
        })
    }

    /// The idempotency key (and claim key) of one occurrence.
    pub fn occurrence_key(&self, occurrence: DateTime<Utc>) -> String {
        format!("plan:{}:{}", self.name, occurrence.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchedulerConfig {
    pub plans: Vec<BackupPlan>,
    /// Seconds between ticks (default 30).
    #[serde(default = "default_tick")]
    pub tick_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("plan '{plan}': invalid schedule '{schedule}': {why}")]
    BadSchedule { plan: String, schedule: String, why: String },
    #[error("plan '{plan}': {why}")]
    BadPlan { plan: String, why: String },
    #[error("{0}")]
    BadConfig(String),
}

/// Parse an NCRONTAB expression the way the Functions host does (see the module docs).
pub fn parse_schedule(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!("expected 6 fields ({{second}} {{minute}} {{hour}} {{day}} {{month}} {{day-of-week}}) or 5, found {fields}"));
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())?;
    // A pattern that parses but never matches (`0 0 0 30 2 *`) is a configuration error too.
    cron.find_next_occurrence(&Utc::now(), false).map_err(|_| "the schedule never fires".to_string())?;
    Ok(cron)
}

impl SchedulerConfig {
    /// Check every plan: unique names, a schedule that parses and fires, a valid backup request.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if self.tick_seconds == 0 || self.tick_seconds > 3600 {
            return Err(ScheduleError::BadConfig(format!("tickSeconds must be 1..=3600, not {}", self.tick_seconds)));
        }
        let mut names = HashSet::new();
        for p in &self.plans {
            let bad = |why: String| ScheduleError::BadPlan { plan: p.name.clone(), why };
            if p.name.trim().is_empty() || p.name.len() > 100 || p.name.chars().any(|c| c.is_control()) {
                return Err(bad("the name must be 1-100 printable characters".into()));
            }
            if !names.insert(p.name.to_lowercase()) {
                return Err(bad("another plan has the same name".into()));
            }
            parse_schedule(&p.schedule).map_err(|why| ScheduleError::BadSchedule {
                plan: p.name.clone(),
                schedule: p.schedule.clone(),
                why,
            })?;
            engine::validate(&p.input()).map_err(|e| bad(e.to_string()))?;
        }
        Ok(())
    }
}

/// One occurrence submitted by a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredPlan {
    pub plan: String,
    pub occurrence: DateTime<Utc>,
    pub workflow_id: String,
    /// Whether this tick created the workflow. Ticks report only the occurrences they created, so
    /// this is `true`; an occurrence found already submitted (restart, another instance, a crash
    /// between submit and claim) is not reported at all.
    pub created: bool,
}

struct Plan {
    spec: BackupPlan,
    cron: Cron,
}

pub struct Scheduler {
    engine: Arc<Engine>,
    cfg: SchedulerConfig,
    plans: Vec<Plan>,
    /// The latest occurrence each plan handled in this process (fired, found fired, or skipped):
    /// saves backend calls on ticks within one period. Claims remain the source of truth.
    handled: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl Scheduler {
    /// Validates the configuration.
    pub fn new(engine: Arc<Engine>, cfg: SchedulerConfig) -> Result<Scheduler, ScheduleError> {
        cfg.validate()?;
        let plans = cfg
            .plans
            .iter()
            .map(|p| {
                let cron = parse_schedule(&p.schedule).map_err(|why| ScheduleError::BadSchedule {
                    plan: p.name.clone(),
                    schedule: p.schedule.clone(),
                    why,
                })?;
                Ok(Plan { spec: p.clone(), cron })
            })
            .collect::<Result<Vec<_>, ScheduleError>>()?;
        Ok(Scheduler { engine, cfg, plans, handled: Mutex::new(HashMap::new()) })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// How late an occurrence may be found and still count as on time.
    fn grace(&self) -> chrono::Duration {
        chrono::Duration::seconds((2 * self.cfg.tick_seconds).max(60) as i64)
    }

    /// Fire what is due at `now`. Errors (a backend down) are logged and the occurrence is tried
    /// again on the next tick.
    pub async fn tick(&self, now: DateTime<Utc>) -> Vec<FiredPlan> {
        let mut fired = Vec::new();
        for plan in &self.plans {
            match self.tick_plan(plan, now).await {
                Ok(Some(f)) => fired.push(f),
                Ok(None) => {}
                Err(e) => tracing::warn!(plan = %plan.spec.name, error = %e, "scheduled backup not submitted; retrying next tick"),
            }
        }
        fired
    }

    async fn tick_plan(&self, plan: &Plan, now: DateTime<Utc>) -> Result<Option<FiredPlan>, SubmitError> {
        let Ok(occurrence) = plan.cron.find_previous_occurrence(&now, true) else {
            return Ok(None);
        };
        let name = &plan.spec.name;
        if self.handled.lock().unwrap().get(name).is_some_and(|last| *last >= occurrence) {
            return Ok(None);
        }
        let late = now - occurrence;
        let max_catch_up = chrono::Duration::from_std(MAX_CATCH_UP).unwrap_or(chrono::Duration::days(7));
        if late > self.grace() && (!plan.spec.catch_up || late > max_catch_up) {
            tracing::info!(plan = %name, %occurrence, "missed occurrence not fired (catch-up off or too old)");
            self.mark(name, occurrence);
            return Ok(None);
        }
        let key = plan.spec.occurrence_key(occurrence);
        let submitted = self.engine.submit(plan.spec.input(), &format!("schedule:{name}"), Some(&key)).await?;
        let claimed = self.engine.backend().claim(&key, CLAIM_TTL, now).await?;
        self.mark(name, occurrence);
        if submitted.created {
            tracing::info!(plan = %name, %occurrence, workflow_id = %submitted.id, late_s = late.num_seconds(), "scheduled backup fired");
            Ok(Some(FiredPlan { plan: name.clone(), occurrence, workflow_id: submitted.id, created: true }))
        } else {
            if claimed {
                // Submitted earlier by a process that stopped before its claim (or that is racing
                // this one): the same workflow, now recorded.
                tracing::info!(plan = %name, %occurrence, workflow_id = %submitted.id, "occurrence already submitted; claim recorded");
            }
            Ok(None)
        }
    }

    fn mark(&self, name: &str, occurrence: DateTime<Utc>) {
        let mut handled = self.handled.lock().unwrap();
        let e = handled.entry(name.to_string()).or_insert(occurrence);
        if *e < occurrence {
            *e = occurrence;
        }
    }

    /// Tick every `tickSeconds` until `shutdown` completes.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut every = tokio::time::interval(Duration::from_secs(self.cfg.tick_seconds));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = every.tick() => {
                    for f in self.tick(Utc::now()).await {
                        tracing::debug!(plan = %f.plan, occurrence = %f.occurrence, workflow_id = %f.workflow_id, "fired");
                    }
                }
            }
        }
        tracing::info!("scheduler stopped");
    }
}
