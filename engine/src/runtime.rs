//! Runs a plan: every stage on its own worker threads, stages joined by bounded crossbeam
//! channels so a slow consumer blocks its producers (memory is bounded by the queues).
//!
//! Life of a run: instances are created (all parameters are known good), the threads start, sources
//! produce until done or cancelled, every other stage drains its queue, calls `finish` once its
//! last worker is done, then drops its senders so the next stage sees the end of its input.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use crossbeam_channel::{Receiver, Sender, bounded};
use mindscan_sdk::Item;
use mindscan_sdk::abi::{Outcome, Role, Status};
use serde::Serialize;
use serde_json::json;

use crate::config::OnError;
use crate::host::{CallError, HostServices, Outlet, StageInstance};
use crate::plan::Plan;
use crate::progress::Progress;

/// Items travel between stages behind an `Arc`: fan-out shares one item, never its voxels.
pub type Shared = Arc<Item>;

/// What a queue carries: an item and the source item it derives from.
#[derive(Clone)]
pub struct Envelope {
    item: Shared,
    root: Option<Arc<Root>>,
}

/// In-flight accounting of one source stage: how many of its items still hold a slot (see
/// [`Slot`]), and which items (with everything derived from them) ended since the source last
/// asked.
struct SourceTrack {
    max_in_flight: usize,
    state: Mutex<TrackState>,
    changed: Condvar,
}

#[derive(Default)]
struct TrackState {
    in_flight: usize,
    /// Set when the source first asks for completions; until then none are kept.
    recording: bool,
    /// Key, outcome, first error (empty when none).
    completed: Vec<(String, Outcome, String)>,
}

impl SourceTrack {
    /// Waits until fewer than `max_in_flight` items are in flight; `take` also claims a slot.
    fn acquire(&self, run: &RunShared, take: bool) -> Status {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while st.in_flight >= self.max_in_flight {
            if run.stopping() {
                return Status::Cancelled;
            }
            st = self
                .changed
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if take {
            st.in_flight += 1;
        }
        Status::Ok
    }
}

/// One of a source's `max_in_flight` slots, taken when the source emits an item. It is freed
/// as soon as the item no longer costs memory: when the voxels the source read have been
/// released by every stage (the last tensor handle anywhere), or when the item is complete,
/// whichever comes first. So a reader can decode the next volume while the slices of the last
/// one are still being encoded, without ever holding two volumes at once when `max_in_flight`
/// is 1; and a stage that keeps copies of tensors cannot hold the source back forever.
struct Slot {
    track: Arc<SourceTrack>,
    released: AtomicBool,
}

impl Slot {
    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            let mut st = self.track.state.lock().unwrap_or_else(|p| p.into_inner());
            st.in_flight -= 1;
            drop(st);
            self.track.changed.notify_all();
        }
    }
}

/// Attached to the tensors a source emits; dropped with the last handle of the last of them.
/// `armed` once a tensor holds it, so a guard no tensor took does not free the slot.
struct DataGuard {
    slot: Arc<Slot>,
    armed: AtomicBool,
}

impl Drop for DataGuard {
    fn drop(&mut self) {
        if self.armed.load(Ordering::Acquire) {
            self.slot.release();
        }
    }
}

/// Shared by every item derived from one source item. When the last of them has been handled
/// (the last `Arc` drops), the source item is complete.
pub struct Root {
    key: String,
    slot: Arc<Slot>,
    /// An [`Outcome`] as u32; only ever moves away from `Done`.
    outcome: AtomicU32,
    /// The first error reported for the item or one derived from it.
    error: Mutex<Option<String>>,
}

impl Root {
    fn fail(&self, o: Outcome, message: &str) {
        self.mark(o);
        let mut e = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if e.is_none() {
            *e = Some(message.to_string());
        }
    }

    fn mark(&self, o: Outcome) {
        // A failure wins over an abandon: the source must not retry an item that failed.
        let _ = self
            .outcome
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                match (Outcome::from_u32(cur), o) {
                    (Outcome::Failed, _) => None,
                    (_, Outcome::Done) => None,
                    _ => Some(o as u32),
                }
            });
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let outcome = Outcome::from_u32(self.outcome.load(Ordering::Relaxed));
        let mut st = self
            .slot
            .track
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if st.recording {
            let error = match outcome {
                Outcome::Failed => self
                    .error
                    .get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .unwrap_or_default(),
                _ => String::new(),
            };
            st.completed
                .push((std::mem::take(&mut self.key), outcome, error));
        }
        drop(st);
        // Frees the slot (and wakes the source) unless the item's data was released first.
        self.slot.release();
    }
}

/// Counters of one stage, updated by its workers and read by the progress display.
#[derive(Default)]
pub struct StageCounters {
    pub items_in: AtomicU64,
    pub items_out: AtomicU64,
    pub errors: AtomicU64,
    pub busy_ns: AtomicU64,
    pub done: AtomicBool,
}

/// Per-stage summary at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub id: String,
    pub stage: String,
    /// `source`, `transform` or `sink`.
    pub role: String,
    pub workers: usize,
    pub items_in: u64,
    pub items_out: u64,
    pub errors: u64,
    pub busy_seconds: f64,
    /// Items handled per second of busy time (items out for sources).
    pub throughput_per_busy_second: f64,
}

/// What happened in a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    pub wall_seconds: f64,
    pub cancelled: bool,
    /// The error that stopped the run (a stage with `on_error: fail`).
    pub failure: Option<String>,
    pub stages: Vec<StageReport>,
    /// Inputs that failed or were skipped, whatever `on_error` let the run do next (the first
    /// [`MAX_LISTED_FAILURES`]; `total_errors` counts them all).
    pub failed_inputs: Vec<FailedInput>,
}

/// One input (file, series, item) that did not make it through a stage.
#[derive(Debug, Clone, Serialize)]
pub struct FailedInput {
    pub stage: String,
    /// The input's source (file or folder) when known, else its item key.
    pub input: String,
    pub reason: String,
}

/// How many failed inputs a report lists (a run over a broken archive can have millions).
pub const MAX_LISTED_FAILURES: usize = 10_000;

impl RunReport {
    pub fn total_errors(&self) -> u64 {
        self.stages.iter().map(|s| s.errors).sum()
    }
    /// Items the sources produced.
    pub fn items_produced(&self) -> u64 {
        self.stages
            .iter()
            .filter(|s| s.role == Role::Source.as_str())
            .map(|s| s.items_out)
            .sum()
    }
}

pub struct RunOptions {
    /// Set by Ctrl-C / SIGTERM: sources stop, items in flight finish, sinks flush.
    pub cancel: Arc<AtomicBool>,
    pub progress: Progress,
    pub cuda_device: Option<i32>,
    /// This process's shard of the inputs (`--shard`).
    pub shard: mindscan_sdk::shard::Shard,
}

/// State shared by every stage of a run.
struct RunShared {
    pipeline: String,
    /// Ctrl-C, and `failed`: a `fail` error happened, so stop producing and drop queued items
    /// unprocessed. Shared with the plugins' `is_cancelled`.
    host: Arc<HostServices>,
    failure: Mutex<Option<String>>,
    failed_inputs: Mutex<Vec<FailedInput>>,
    dead_letter_path: std::path::PathBuf,
    dead_letter: Mutex<Option<File>>,
}

impl RunShared {
    fn stopping(&self) -> bool {
        self.host.stop().stopping()
    }

    fn failed(&self) -> &AtomicBool {
        &self.host.stop().failed
    }

    fn write_dead_letter(&self, record: serde_json::Value) -> Result<()> {
        let mut guard = self.dead_letter.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if let Some(dir) = self.dead_letter_path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            *guard = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.dead_letter_path)
                    .with_context(|| format!("{}: cannot open", self.dead_letter_path.display()))?,
            );
        }
        let mut line = serde_json::to_vec(&record)?;
        line.push(b'\n');
        // One write per record so a crash never leaves half a line behind another record.
        guard.as_mut().expect("opened above").write_all(&line)?;
        Ok(())
    }
}

/// One stage as its workers see it.
struct StageRt {
    id: String,
    type_name: String,
    role: Role,
    on_error: OnError,
    /// Stages with inputs: the longest one item's `process` may take.
    timeout: Option<Duration>,
    counters: Arc<StageCounters>,
    /// Sources: in-flight accounting of the items they emit.
    track: Option<Arc<SourceTrack>>,
}

/// The outlet a worker hands to its plugin: forwards items to every consumer's queue.
struct WorkerOutlet<'a> {
    stage: &'a StageRt,
    run: &'a RunShared,
    senders: &'a [Sender<Envelope>],
    /// The item being processed (for dead-letter provenance) and its source item.
    current: Option<&'a Envelope>,
    /// When the item's time is up (the stage's `timeout`): later emits are refused.
    deadline: Option<Instant>,
}

impl Outlet for WorkerOutlet<'_> {
    fn emit(&self, mut item: Item) -> Status {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            // The item timed out: nothing more of it goes downstream.
            return Status::Cancelled;
        }
        let root = match &self.stage.track {
            Some(track) => {
                // A source: every item it emits starts a new root and takes an in-flight slot.
                if self.run.stopping() {
                    return Status::Cancelled;
                }
                if track.acquire(self.run, true) != Status::Ok {
                    return Status::Cancelled;
                }
                let slot = Arc::new(Slot {
                    track: track.clone(),
                    released: AtomicBool::new(false),
                });
                // The item's tensors were just received, so this is their only handle. Without
                // tensors, the slot is held until the item is complete.
                let guard = Arc::new(DataGuard {
                    slot: slot.clone(),
                    armed: AtomicBool::new(false),
                });
                let mut attached = false;
                for (_, t) in item.tensors.iter_mut() {
                    attached |= t.attach_guard(guard.clone());
                }
                guard.armed.store(attached, Ordering::Release);
                Some(Arc::new(Root {
                    key: item.key().to_string(),
                    slot,
                    outcome: AtomicU32::new(Outcome::Done as u32),
                    error: Mutex::new(None),
                }))
            }
            None => self.current.and_then(|e| e.root.clone()),
        };
        self.stage
            .counters
            .items_out
            .fetch_add(1, Ordering::Relaxed);
        let env = Envelope {
            item: Arc::new(item),
            root,
        };
        for s in self.senders {
            // Blocks while the consumer's queue is full: this is the backpressure.
            if s.send(env.clone()).is_err() {
                if let Some(r) = &env.root {
                    r.mark(Outcome::Abandoned);
                }
                return Status::Cancelled;
            }
        }
        Status::Ok
    }

    fn item_error(&self, key: &str, source: &str, message: &str) -> Status {
        handle_error(self.stage, self.run, key, source, message, self.current)
    }

    fn wait_ready(&self) -> Status {
        match &self.stage.track {
            Some(track) => track.acquire(self.run, false),
            None => Status::Ok,
        }
    }

    fn take_completed(&self, visit: &mut dyn FnMut(&str, Outcome, &str)) {
        let Some(track) = &self.stage.track else {
            return;
        };
        let done = {
            let mut st = track.state.lock().unwrap_or_else(|p| p.into_inner());
            st.recording = true;
            std::mem::take(&mut st.completed)
        };
        for (key, outcome, error) in done {
            visit(&key, outcome, &error);
        }
    }
}

fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Applies the stage's error policy. Returns `Cancelled` when the run must stop.
fn handle_error(
    stage: &StageRt,
    run: &RunShared,
    key: &str,
    source: &str,
    message: &str,
    env: Option<&Envelope>,
) -> Status {
    stage.counters.errors.fetch_add(1, Ordering::Relaxed);
    {
        let mut list = run.failed_inputs.lock().unwrap_or_else(|p| p.into_inner());
        if list.len() < MAX_LISTED_FAILURES {
            list.push(FailedInput {
                stage: stage.id.clone(),
                input: if source.is_empty() { key } else { source }.to_string(),
                reason: message.to_string(),
            });
        }
    }
    if let Some(root) = env.and_then(|e| e.root.as_ref()) {
        // `fail` stops the run because of this item: nothing was skipped, so the source may
        // process it again next time. `skip` / `dead_letter` settle it as failed.
        let o = match stage.on_error {
            OnError::Fail => Outcome::Abandoned,
            _ => Outcome::Failed,
        };
        root.fail(
            o,
            &format!("stage '{}' ({}): {message}", stage.id, stage.type_name),
        );
    }
    let item = env.map(|e| &*e.item);
    let what = match (key.is_empty(), source.is_empty()) {
        (true, true) => String::new(),
        (_, false) => format!(" [{source}]"),
        (false, true) => format!(" [{key}]"),
    };
    match stage.on_error {
        OnError::Fail => {
            tracing::error!(stage = %stage.id, "{}{what}: {message}", stage.type_name);
            let mut f = run.failure.lock().unwrap_or_else(|p| p.into_inner());
            if f.is_none() {
                *f = Some(format!(
                    "stage '{}' ({}){what}: {message}",
                    stage.id, stage.type_name
                ));
            }
            run.failed().store(true, Ordering::SeqCst);
            Status::Cancelled
        }
        OnError::Skip => {
            tracing::warn!(stage = %stage.id, "skipped{what}: {message}");
            Status::Ok
        }
        OnError::DeadLetter => {
            tracing::warn!(stage = %stage.id, "dead-lettered{what}: {message}");
            let record = json!({
                "time": unix_time(),
                "pipeline": run.pipeline,
                "stage": stage.id,
                "stage_type": stage.type_name,
                "key": key,
                "source": source,
                "error": message,
                "item": item.map(|i| json!({"kind": i.kind, "meta": i.meta.0})),
            });
            if let Err(e) = run.write_dead_letter(record) {
                tracing::error!(
                    "cannot write dead-letter record to {}: {e:#}",
                    run.dead_letter_path.display()
                );
            }
            Status::Ok
        }
    }
}

fn call_failed(stage: &StageRt, run: &RunShared, e: CallError, env: Option<&Envelope>) {
    let (key, source) = env
        .map(|e| {
            (
                e.item.key().to_string(),
                e.item.meta.source().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default();
    match e {
        CallError::Cancelled => {
            if let Some(root) = env.and_then(|e| e.root.as_ref()) {
                root.mark(Outcome::Abandoned);
            }
        }
        CallError::Failed(m) | CallError::Panicked(m) => {
            let m = if m.is_empty() {
                "failed without a message".into()
            } else {
                m
            };
            handle_error(stage, run, &key, &source, &m, env);
        }
    }
}

/// Runs `plan` to completion (or until cancelled / failed).
pub fn run(plan: &Plan, opts: RunOptions) -> Result<RunReport> {
    let started = Instant::now();
    let host = HostServices::new(
        opts.cancel.clone(),
        opts.cuda_device,
        &plan.state_dir,
        opts.shard,
    );
    let run = RunShared {
        pipeline: plan.name.clone(),
        host: host.clone(),
        failure: Mutex::new(None),
        failed_inputs: Mutex::new(Vec::new()),
        dead_letter_path: plan.dead_letter.clone(),
        dead_letter: Mutex::new(None),
    };

    // Create every instance before any thread starts, so a bad parameter stops nothing half-way.
    let mut instances = Vec::with_capacity(plan.stages.len());
    for st in &plan.stages {
        let params = serde_json::to_string(&st.params)?;
        instances.push(StageInstance::create(
            &st.ty,
            &st.id,
            &params,
            host.clone(),
            plan.seed,
        )?);
    }

    let stages: Vec<StageRt> = plan
        .stages
        .iter()
        .map(|st| StageRt {
            id: st.id.clone(),
            type_name: st.ty.name.clone(),
            role: st.ty.role,
            on_error: st.on_error,
            timeout: st.timeout,
            counters: Arc::new(StageCounters::default()),
            track: (st.ty.role == Role::Source).then(|| {
                Arc::new(SourceTrack {
                    max_in_flight: st.max_in_flight.max(1),
                    state: Mutex::new(TrackState::default()),
                    changed: Condvar::new(),
                })
            }),
        })
        .collect();

    // One bounded queue in front of every stage that has inputs (fan-in shares it).
    let mut txs: Vec<Option<Sender<Envelope>>> = Vec::new();
    let mut rxs: Vec<Option<Receiver<Envelope>>> = Vec::new();
    for st in &plan.stages {
        if st.inputs.is_empty() {
            txs.push(None);
            rxs.push(None);
        } else {
            let (tx, rx) = bounded(st.queue);
            txs.push(Some(tx));
            rxs.push(Some(rx));
        }
    }
    let senders: Vec<Vec<Sender<Envelope>>> = plan
        .stages
        .iter()
        .map(|st| st.outputs.iter().filter_map(|&o| txs[o].clone()).collect())
        .collect();
    drop(txs);

    let progress = opts.progress.start(
        plan.stages
            .iter()
            .zip(&stages)
            .zip(&rxs)
            .map(|((p, s), rx)| {
                (
                    p.id.clone(),
                    p.ty.name.clone(),
                    s.counters.clone(),
                    rx.clone(),
                )
            })
            .collect(),
    );

    std::thread::scope(|scope| {
        for (((st, rt), inst), (outs, rx)) in plan
            .stages
            .iter()
            .zip(&stages)
            .zip(&instances)
            .zip(senders.into_iter().zip(rxs))
        {
            let run = &run;
            let workers = st.workers;
            std::thread::Builder::new()
                .name(st.id.clone())
                .spawn_scoped(scope, move || {
                    std::thread::scope(|inner| {
                        for w in 0..workers {
                            let outs = &outs;
                            let rx = rx.clone();
                            std::thread::Builder::new()
                                .name(format!("{}#{w}", st.id))
                                .spawn_scoped(inner, move || {
                                    worker(rt, run, inst, w, workers, outs, rx)
                                })
                                .expect("spawn worker thread");
                        }
                    });
                    drop(rx);
                    // Every worker is done: let the stage flush, then close its outputs.
                    let outlet = WorkerOutlet {
                        stage: rt,
                        run,
                        senders: &outs,
                        current: None,
                        deadline: None,
                    };
                    let t0 = Instant::now();
                    if let Err(e) = inst.finish(&outlet) {
                        call_failed(rt, run, e, None);
                    }
                    rt.counters
                        .busy_ns
                        .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    rt.counters.done.store(true, Ordering::Relaxed);
                    drop(outs);
                })
                .expect("spawn stage thread");
        }
    });

    progress.stop();
    drop(instances);

    let wall = started.elapsed().as_secs_f64();
    let reports = stages
        .iter()
        .zip(&plan.stages)
        .map(|(rt, st)| {
            let c = &rt.counters;
            let busy = Duration::from_nanos(c.busy_ns.load(Ordering::Relaxed)).as_secs_f64();
            let handled = if rt.role == Role::Source {
                c.items_out.load(Ordering::Relaxed)
            } else {
                c.items_in.load(Ordering::Relaxed)
            };
            StageReport {
                id: rt.id.clone(),
                stage: rt.type_name.clone(),
                role: rt.role.as_str().to_string(),
                workers: st.workers,
                items_in: c.items_in.load(Ordering::Relaxed),
                items_out: c.items_out.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
                busy_seconds: busy,
                throughput_per_busy_second: if busy > 0.0 {
                    handled as f64 / busy
                } else {
                    0.0
                },
            }
        })
        .collect();
    let failure = run
        .failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(RunReport {
        pipeline: plan.name.clone(),
        wall_seconds: wall,
        cancelled: opts.cancel.load(Ordering::Relaxed) && failure.is_none(),
        failure,
        stages: reports,
        failed_inputs: std::mem::take(
            &mut *run.failed_inputs.lock().unwrap_or_else(|p| p.into_inner()),
        ),
    })
}

/// The error of an item that ran past the stage's `timeout`.
fn timed_out(limit: Duration, took: Duration, r: Result<(), CallError>) -> String {
    let mut m = format!(
        "timed out: processing took {:.1}s, over the stage's timeout of {}",
        took.as_secs_f64(),
        humantime(limit)
    );
    match r {
        Err(CallError::Failed(e)) | Err(CallError::Panicked(e)) if !e.is_empty() => {
            m.push_str(&format!(" (the plugin then said: {e})"));
        }
        Ok(()) => m.push_str(" (the plugin does not check cancellation, so it ran to the end)"),
        _ => {}
    }
    m
}

/// `500ms`, `60s`, `1.5s`: a timeout as the pipeline file would write it.
fn humantime(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

fn worker(
    rt: &StageRt,
    run: &RunShared,
    inst: &StageInstance,
    w: usize,
    workers: usize,
    outs: &[Sender<Envelope>],
    rx: Option<Receiver<Envelope>>,
) {
    match rx {
        None => {
            // A source: produce until done or cancelled.
            let outlet = WorkerOutlet {
                stage: rt,
                run,
                senders: outs,
                current: None,
                deadline: None,
            };
            let t0 = Instant::now();
            if let Err(e) = inst.produce(w, workers, &outlet) {
                call_failed(rt, run, e, None);
            }
            rt.counters
                .busy_ns
                .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        Some(rx) => {
            for env in rx.iter() {
                rt.counters.items_in.fetch_add(1, Ordering::Relaxed);
                if run.failed().load(Ordering::Relaxed) {
                    // The run is failing: drain without work (the source may retry it later).
                    if let Some(root) = &env.root {
                        root.mark(Outcome::Abandoned);
                    }
                    continue;
                }
                let t0 = Instant::now();
                let deadline = rt.timeout.map(|t| t0 + t);
                let outlet = WorkerOutlet {
                    stage: rt,
                    run,
                    senders: outs,
                    current: Some(&env),
                    deadline,
                };
                let r = inst.process(&env.item, w, workers, &outlet, deadline);
                let took = t0.elapsed();
                rt.counters
                    .busy_ns
                    .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
                match (rt.timeout, r) {
                    // Past its time, whatever the call returned (cancelled, an error, or done
                    // late by a plugin that never checks `is_cancelled`): the item failed.
                    (Some(limit), r) if took >= limit => {
                        call_failed(
                            rt,
                            run,
                            CallError::Failed(timed_out(limit, took, r)),
                            Some(&env),
                        );
                    }
                    (_, Err(e)) => call_failed(rt, run, e, Some(&env)),
                    (_, Ok(())) => {}
                }
            }
        }
    }
}
