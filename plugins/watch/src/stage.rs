//! The `watch.folder` source: files arriving in folders → one `volume` item per stable DICOM
//! series or settled NIfTI file, exactly once across crashes.
//!
//! Life of a file: seen (catch-up walk, a `notify` event, or a poll) → *candidate* until its size
//! and mtime have not changed for `settle` → *taken*: recorded in the journal as a DICOM instance
//! (header parsed), a NIfTI volume, a duplicate, a non-image or a rejected file. Life of a DICOM
//! series: instances collect until none has arrived for `stable_age` → the journal records the
//! version as `emitted` → the series is decoded and emitted → when every stage downstream has
//! handled it (the host's completion report), the journal records `done` (or `failed`).
//!
//! After a crash, `emitted` versions are emitted again with `replay: true` in their metadata
//! (sinks then replace what a previous attempt may have written), collecting series resume
//! from the journal, and the catch-up walk picks up whatever arrived meanwhile.
//!
//! Late instances (a new SOPInstanceUID for a series already emitted) follow
//! `late_instances`: `new_version` (default) emits the whole series again, as version 2, 3...
//! under the name `<stem>_v2`, leaving the earlier outputs as they are; `ignore` records and
//! reports them and emits nothing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, bounded, unbounded};
use mindscan_dicom::item::{Planned, deid_options, load_planned, plan_series};
use mindscan_dicom::{
    DeidOptions, DicomError, FileIdentity, ParsedHeader, hash_uid, identify_keeping, scan_with,
};
use mindscan_nifti::item::is_nifti;
use mindscan_nifti::read_nifti;
use mindscan_sdk::Cancelled;
use mindscan_sdk::prelude::*;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::discover::{EventSource, Seen, age, file_stamp, is_ignored, walk};
use crate::journal::{FileKind, FileRow, Journal, SeriesState};
use mindscan_sdk::duration::Span;

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "snake_case")]
pub enum LateRule {
    /// Emit the whole series again as a new version (`<stem>_v2`...), with a warning.
    #[default]
    NewVersion,
    /// Record and report the late instance; emit nothing.
    Ignore,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchParams {
    /// Folders to watch, recursively (created if missing).
    pub paths: Vec<String>,
    /// A file is taken once its size and mtime have not changed for this long.
    #[serde(default = "default_settle")]
    pub settle: Span,
    /// A DICOM series is emitted once no new instance has arrived for this long (Orthanc's
    /// StableAge).
    #[serde(default = "default_stable_age")]
    pub stable_age: Span,
    /// Also walk the folders at this interval, for network shares where file-system events do
    /// not arrive (e.g. `5s`). Without it, events only (plus a walk when events were lost).
    pub poll: Option<Span>,
    /// Use file-system events (inotify, FSEvents...). `false` for folders where they never
    /// arrive (NFS/SMB shares): `poll` alone then finds files (default 5s when unset).
    #[serde(default = "yes")]
    pub events: bool,
    /// New instances of a series already emitted: `new_version` or `ignore`.
    #[serde(default)]
    pub late_instances: LateRule,
    /// Process what is in the folders now (the catch-up scan), then stop, instead of watching.
    #[serde(default)]
    pub once: bool,
    /// Output name template, as for `dicom.read` (`%p` protocol, `%s` series number, ...).
    /// Names are made unique across series with `_2`, `_3`... using the journal.
    #[serde(default = "default_name")]
    pub name: String,
    /// De-identified DICOM attributes to keep in the sidecar (as for `dicom.read`).
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// Zero-fill undecodable slices instead of failing the series (as for `dicom.read`).
    #[serde(default)]
    pub lenient: bool,
    /// Also take NIfTI volumes (`.nii`, `.nii.gz`).
    #[serde(default = "yes")]
    pub nifti: bool,
}

fn default_settle() -> Span {
    Span(Duration::from_secs(2))
}
fn default_stable_age() -> Span {
    Span(Duration::from_secs(60))
}
fn default_name() -> String {
    "%p_%s".into()
}
fn yes() -> bool {
    true
}

/// Watches folders for DICOM series and NIfTI volumes; see the module docs.
pub struct WatchFolder {
    roots: Vec<PathBuf>,
    settle: Duration,
    stable_age: Duration,
    poll: Option<Duration>,
    events: bool,
    late: LateRule,
    once: bool,
    name: String,
    deid: DeidOptions,
    lenient: bool,
    nifti: bool,
    /// Series splits handed by the watcher (worker 0) to the decoders (workers 1..N).
    jobs: (Sender<DecodeJob>, Receiver<DecodeJob>),
    /// What became of each job, back to the watcher.
    reports: (Sender<DecodeReport>, Receiver<DecodeReport>),
    /// Set when the watcher has stopped: decoders finish the queued jobs, then return.
    watcher_done: AtomicBool,
    /// `watch.scan`: emit references (decoded by `volume.load`, here or on the machines behind
    /// a queue) instead of volumes.
    references: bool,
}

/// What a decoder turns into a `volume` item.
enum Volume {
    /// One split of a DICOM series (boxed: a planned series is large).
    Dicom(Box<Planned>),
    /// A NIfTI file, with its journal-unique name.
    Nifti { path: PathBuf, stem: String },
}

impl Volume {
    fn load(&self, deid: &DeidOptions, lenient: bool, ctx: &Context) -> Result<Item> {
        match self {
            Volume::Dicom(p) => load_planned(p, deid, lenient, &|w| ctx.warn(w)),
            Volume::Nifti { path, stem } => {
                let mut item = mindscan_nifti::item::volume_item(path, read_nifti(path)?, true)?;
                item.meta.set("stem", stem);
                Ok(item)
            }
        }
    }

    /// The reference a decoder elsewhere turns into this volume (`volume.load`).
    fn reference(&self) -> Result<Item> {
        match self {
            Volume::Dicom(p) => Ok(mindscan_dicom::item::reference_item(p)),
            Volume::Nifti { path, stem } => {
                let mut item = mindscan_nifti::item::reference_item(path);
                item.meta.set("stem", stem);
                Ok(item)
            }
        }
    }

    fn source(&self) -> String {
        match self {
            Volume::Dicom(p) => p.source.clone(),
            Volume::Nifti { path, .. } => path.display().to_string(),
        }
    }
}

/// One volume to decode and emit.
struct DecodeJob {
    fid: String,
    key: String,
    volume: Volume,
    version: u32,
    replay: bool,
}

/// How a decode job ended (a sent item ends later, with its completion).
enum Decoded {
    Sent,
    Failed,
    Abandoned,
}

struct DecodeReport {
    fid: String,
    key: String,
    result: Decoded,
}

impl WatchFolder {
    /// Decoder workers: take jobs until the watcher is done and the queue is empty.
    fn decode_jobs(&self, ctx: &Context, out: &mut Emitter) -> Result<()> {
        loop {
            match self.jobs.1.recv_timeout(Duration::from_millis(50)) {
                Ok(job) => {
                    let result = self.decode_and_emit(ctx, out, &job);
                    let _ = self.reports.0.send(DecodeReport {
                        fid: job.fid,
                        key: job.key,
                        result,
                    });
                }
                Err(RecvTimeoutError::Timeout) if !self.watcher_done.load(Ordering::Acquire) => {}
                Err(_) => return Ok(()),
            }
        }
    }

    fn decode_and_emit(&self, ctx: &Context, out: &mut Emitter, job: &DecodeJob) -> Decoded {
        // Decode only when the pipeline has room for one more series.
        if out.wait_ready().is_err() {
            return Decoded::Abandoned;
        }
        let item = if self.references {
            job.volume.reference()
        } else {
            job.volume.load(&self.deid, self.lenient, ctx)
        };
        match item {
            Ok(mut item) => {
                item.meta.set(keys::KEY, &job.key);
                item.meta.set("version", job.version);
                if job.replay {
                    item.meta.set("replay", true);
                }
                match out.emit(item) {
                    Ok(()) => Decoded::Sent,
                    Err(_) => Decoded::Abandoned,
                }
            }
            // With `on_error: fail` the run stops here: left to be processed again next time.
            Err(e) => match out.item_error(&job.key, &job.volume.source(), &e) {
                Ok(()) => Decoded::Failed,
                Err(_) => Decoded::Abandoned,
            },
        }
    }
}

impl Stage for WatchFolder {
    type Params = WatchParams;
    const NAME: &'static str = "watch.folder";
    const ROLE: Role = Role::Source;
    const INPUTS: &'static [&'static str] = &[];
    const OUTPUTS: &'static [&'static str] = &[kinds::VOLUME];
    const DESCRIPTION: &'static str = "Watch folders for DICOM series and NIfTI volumes; emit each \
         stable series once, with a crash-safe journal (exactly-once with the host's completions)";

    fn new(p: WatchParams, host: &Host) -> Result<Self> {
        WatchFolder::with_output(p, host, false)
    }

    fn produce(&self, ctx: &Context, out: &mut Emitter) -> Result<()> {
        self.watch(ctx, out)
    }
}

/// `watch.scan`: `watch.folder` that emits references instead of volumes, for a watcher that
/// only discovers (`queue.publish` shares the decoding among workers, `volume.load` decodes).
pub struct WatchScan(WatchFolder);

impl Stage for WatchScan {
    type Params = WatchParams;
    const NAME: &'static str = "watch.scan";
    const ROLE: Role = Role::Source;
    const INPUTS: &'static [&'static str] = &[];
    const OUTPUTS: &'static [&'static str] = &[kinds::REFERENCE];
    const DESCRIPTION: &'static str = "Watch folders as watch.folder does, but emit a reference          per stable series or file (for volume.load, here or behind a queue) instead of decoding";

    fn new(p: WatchParams, host: &Host) -> Result<Self> {
        if !p.keep_tags.is_empty() || p.lenient {
            bail!(
                "keep_tags and lenient are volume.load parameters with watch.scan (it decodes nothing)"
            );
        }
        WatchFolder::with_output(p, host, true).map(WatchScan)
    }

    fn produce(&self, ctx: &Context, out: &mut Emitter) -> Result<()> {
        self.0.watch(ctx, out)
    }
}

impl WatchFolder {
    fn with_output(p: WatchParams, host: &Host, references: bool) -> Result<Self> {
        if host.shard().is_split() {
            bail!(
                "watch.folder cannot be sharded: a watched folder has one journal; run one watcher (and share the work through a queue)"
            );
        }
        if p.paths.is_empty() {
            bail!("paths is empty: give the folders to watch");
        }
        let deid = deid_options(&p.keep_tags)?;
        if p.poll.is_some_and(|s| s.0 < Duration::from_millis(100)) {
            bail!("poll must be at least 100ms");
        }
        let mut roots = Vec::new();
        for s in &p.paths {
            let r = PathBuf::from(s);
            std::fs::create_dir_all(&r)
                .with_context(|| format!("{}: cannot create the watched folder", r.display()))?;
            // Events carry absolute paths: compare like with like.
            roots.push(r.canonicalize().unwrap_or(r));
        }
        Ok(WatchFolder {
            roots,
            settle: p.settle.0,
            stable_age: p.stable_age.0,
            poll: p.poll.map(|s| s.0),
            events: p.events,
            late: p.late_instances,
            once: p.once,
            name: p.name,
            deid,
            lenient: p.lenient,
            nifti: p.nifti,
            jobs: bounded(1),
            reports: unbounded(),
            watcher_done: AtomicBool::new(false),
            references,
        })
    }

    fn watch(&self, ctx: &Context, out: &mut Emitter) -> Result<()> {
        if ctx.worker_index() > 0 {
            // One watcher per stage; the other workers decode the series it hands them.
            return self.decode_jobs(ctx, out);
        }
        // However the watcher ends (journal error included), the decoders must learn it.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _done = Done(&self.watcher_done);
        let state = ctx.host().state_dir().join(ctx.stage_id());
        let state = absolute(&state);
        let journal = Journal::open(&state)?;
        let mut w = Watcher {
            cfg: self,
            ctx,
            journal,
            state,
            candidates: HashMap::new(),
            recent_dirs: Vec::new(),
            collecting: HashMap::new(),
            flights: HashMap::new(),
            keys: HashMap::new(),
            parallel: ctx.worker_count(),
            stats: Stats::default(),
        };
        // Completions are recorded from the first call on: ask before emitting anything.
        let _ = out.take_completed();
        let result = w.run(out);
        w.drain(out);
        w.summary();
        match result {
            Err(e) if !e.is::<Cancelled>() => Err(e),
            _ => Ok(()),
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// A file seen but not yet settled.
struct Candidate {
    size: u64,
    mtime: i64,
    since: Instant,
    catch_up: bool,
    /// When it landed: first seen (or, found at start-up, its mtime's age). Until it settles,
    /// its series is unknown, so it holds back every series it may belong to (`stable_pass`).
    landed: Instant,
}

/// A DICOM series whose instances are still arriving.
struct Collecting {
    sops: HashSet<String>,
    last_new: Instant,
    version: u32,
    /// Headers read when the instances were taken (reused when the series goes out).
    headers: Vec<ParsedHeader>,
}

/// A series version named and journaled, ready to decode: (item key, volume) parts.
struct Prepared {
    fid: String,
    version: u32,
    replay: bool,
    parts: Vec<(String, Volume)>,
}

/// An emitted series version waiting for its completions.
struct Flight {
    series: String,
    version: u32,
    stem: String,
    remaining: usize,
    outcome: Outcome,
}

#[derive(Default)]
struct Stats {
    done: u64,
    failed: u64,
    replayed: u64,
    duplicates: u64,
    rejected: u64,
}

struct Watcher<'a> {
    cfg: &'a WatchFolder,
    ctx: &'a Context<'a>,
    journal: Journal,
    /// This stage's state folder (never watched).
    state: PathBuf,
    candidates: HashMap<PathBuf, Candidate>,
    /// Folders that appeared recently, walked again on every tick for a while.
    recent_dirs: Vec<(PathBuf, Instant)>,
    collecting: HashMap<String, Collecting>,
    /// Keyed by `series#version`.
    flights: HashMap<String, Flight>,
    /// Item key → flight id.
    keys: HashMap<String, String>,
    /// The stage's workers: 1 = decode in the watcher, N = N - 1 decoder workers.
    parallel: usize,
    stats: Stats,
}

fn flight_id(series: &str, version: u32) -> String {
    format!("{series}#{version}")
}

/// The collecting series due now. A series is due `stable_age` after its last instance landed,
/// unless a file still settling landed before that: it may be one more instance of the
/// series (its header is read once it has settled), so it holds the series until it settles
/// or until `stable_age` after its own landing, whichever comes first. A file landing after a
/// series was due holds nothing, so steady traffic of other series cannot hold one forever.
fn ready_series(
    collecting: &HashMap<String, Collecting>,
    unsettled_landings: impl Iterator<Item = Instant>,
    stable_age: Duration,
    now: Instant,
) -> Vec<String> {
    // Only the earliest landing still holding matters.
    let holding = unsettled_landings
        .filter(|&l| now.saturating_duration_since(l) < stable_age)
        .min();
    let mut ready: Vec<String> = collecting
        .iter()
        .filter(|(_, c)| {
            let due = c.last_new + stable_age;
            now >= due && holding.is_none_or(|l| l >= due)
        })
        .map(|(k, _)| k.clone())
        .collect();
    ready.sort();
    ready
}

/// `now - d`, or `now` when the clock cannot go back that far.
fn ago(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_sub(d).unwrap_or(now)
}

impl Watcher<'_> {
    fn run(&mut self, out: &mut Emitter) -> Result<()> {
        // Events first, then the catch-up walk: a file created in between is seen by one or
        // the other (or both; the second look is a no-op), never by neither.
        let events = if self.cfg.once || !self.cfg.events {
            None
        } else {
            match EventSource::start(&self.cfg.roots) {
                Ok(e) => Some(e),
                Err(e) => {
                    self.ctx.warn(&format!(
                        "file-system events unavailable ({e}); polling every 5s instead"
                    ));
                    None
                }
            }
        };
        self.recover(out)?;
        self.walk_all(true)?;
        let poll = self
            .cfg
            .poll
            .or((events.is_none() && !self.cfg.once).then_some(Duration::from_secs(5)));
        let tick =
            (self.cfg.settle / 4).clamp(Duration::from_millis(20), Duration::from_millis(250));
        let folders: Vec<String> = self
            .cfg
            .roots
            .iter()
            .map(|r| r.display().to_string())
            .collect();
        self.ctx.info(&format!(
            "{} {} (settle {:?}, stable_age {:?}); journal {}",
            if self.cfg.once {
                "catching up on"
            } else {
                "watching"
            },
            folders.join(", "),
            self.cfg.settle,
            self.cfg.stable_age,
            self.journal.path().display()
        ));
        let mut last_poll = Instant::now();
        loop {
            if self.ctx.is_cancelled() {
                return Ok(());
            }
            self.settle_pass(out)?;
            self.stable_pass(out)?;
            self.completions(out)?;
            if self.cfg.once
                && self.candidates.is_empty()
                && self.collecting.is_empty()
                && self.flights.is_empty()
            {
                return Ok(());
            }
            // Short waits while outputs are being written, so their completion is journaled
            // (and reported) promptly.
            let wait = if self.flights.is_empty() {
                tick
            } else {
                tick.min(Duration::from_millis(20))
            };
            match &events {
                Some(ev) => {
                    for s in ev.drain(wait, 100_000) {
                        match s {
                            Seen::Path(p) => self.consider(&p, false)?,
                            Seen::Rescan => self.walk_all(false)?,
                        }
                    }
                }
                None => std::thread::sleep(wait),
            }
            if let Some(p) = poll
                && last_poll.elapsed() >= p
            {
                self.walk_all(false)?;
                last_poll = Instant::now();
            }
            self.rewalk_new_dirs()?;
        }
    }

    /// Re-emits versions a previous run emitted but did not finish; resumes collecting series.
    fn recover(&mut self, out: &mut Emitter) -> Result<()> {
        for row in self.journal.unfinished()? {
            self.ctx.info(&format!(
                "replaying {} (version {}): a previous run stopped before every output was written",
                row.stem, row.version
            ));
            self.stats.replayed += 1;
            if row.kind == "nifti" {
                let files = self.journal.files_of(&row.series, Some(row.version))?;
                match files.first() {
                    Some(p) => {
                        self.emit_nifti(p, row.version, Some(row.stem.clone()), true, out)?
                    }
                    None => self.journal.mark_finished(
                        &row.series,
                        row.version,
                        SeriesState::Failed,
                        Some("no file recorded"),
                    )?,
                }
            } else {
                self.emit_dicom(&row.series, row.version, Some(row.stem), true, out)?;
            }
        }
        for (series, _path, sop, mtime) in self.journal.collecting()? {
            let version = self.next_version(&series)?;
            let stable_age = self.cfg.stable_age;
            let c = self.collecting.entry(series).or_insert_with(|| Collecting {
                sops: HashSet::new(),
                last_new: ago(stable_age),
                version,
                headers: Vec::new(),
            });
            c.sops.insert(sop);
            c.last_new = c.last_new.max(ago(age(mtime).min(stable_age)));
        }
        Ok(())
    }

    fn next_version(&self, series: &str) -> Result<u32> {
        Ok(self.journal.latest(series)?.map_or(1, |r| r.version + 1))
    }

    /// Walks folders created in the last few seconds again (see `consider`).
    fn rewalk_new_dirs(&mut self) -> Result<()> {
        let keep = self.cfg.settle * 2 + Duration::from_secs(2);
        self.recent_dirs.retain(|(_, t)| t.elapsed() < keep);
        let mut files = Vec::new();
        for (d, _) in &self.recent_dirs {
            if let Some(root) = self.cfg.roots.iter().find(|r| d.starts_with(r)) {
                walk(root, d, &self.state, &mut files);
            }
        }
        for f in files {
            self.consider(&f, false)?;
        }
        Ok(())
    }

    fn walk_all(&mut self, catch_up: bool) -> Result<()> {
        let mut files = Vec::new();
        for r in &self.cfg.roots {
            walk(r, r, &self.state, &mut files);
        }
        for f in files {
            self.consider(&f, catch_up)?;
        }
        Ok(())
    }

    /// Looks at one path (from a walk or an event).
    fn consider(&mut self, path: &Path, catch_up: bool) -> Result<()> {
        let Some(root) = self.cfg.roots.iter().find(|r| path.starts_with(r)) else {
            return Ok(());
        };
        if path.starts_with(&self.state) || is_ignored(root, path) {
            return Ok(());
        }
        if path.is_dir() {
            // A folder moved in at once: one event for the folder, none for its files. A new
            // folder is also walked again for a while: files created in it before the watcher
            // had added it send no event.
            if !catch_up && !self.recent_dirs.iter().any(|(d, _)| d == path) {
                self.recent_dirs.push((path.to_path_buf(), Instant::now()));
            }
            let mut files = Vec::new();
            walk(root, path, &self.state, &mut files);
            for f in files {
                self.consider(&f, catch_up)?;
            }
            return Ok(());
        }
        let Some((size, mtime)) = file_stamp(path) else {
            self.candidates.remove(path);
            return Ok(());
        };
        if let Some(c) = self.candidates.get_mut(path) {
            if (c.size, c.mtime) != (size, mtime) {
                (c.size, c.mtime, c.since) = (size, mtime, Instant::now());
            }
            return Ok(());
        }
        if self.journal.known(&path.to_string_lossy(), size, mtime)? {
            return Ok(());
        }
        // Not modified for `settle` already (e.g. present before start-up): settled now.
        let since = if age(mtime) >= self.cfg.settle {
            ago(self.cfg.settle)
        } else {
            Instant::now()
        };
        let landed = if catch_up {
            ago(age(mtime).min(self.cfg.stable_age))
        } else {
            Instant::now()
        };
        self.candidates.insert(
            path.to_path_buf(),
            Candidate {
                size,
                mtime,
                since,
                catch_up,
                landed,
            },
        );
        Ok(())
    }

    /// Takes the candidates that have settled.
    fn settle_pass(&mut self, out: &mut Emitter) -> Result<()> {
        let now = Instant::now();
        let mut settled = Vec::new();
        let mut gone = Vec::new();
        for (p, c) in self.candidates.iter_mut() {
            match file_stamp(p) {
                None => gone.push(p.clone()),
                Some(st) if st != (c.size, c.mtime) => {
                    (c.size, c.mtime, c.since) = (st.0, st.1, now);
                }
                Some(_) if now.duration_since(c.since) >= self.cfg.settle => {
                    settled.push(p.clone())
                }
                Some(_) => {}
            }
        }
        for p in gone {
            self.candidates.remove(&p);
        }
        if settled.is_empty() {
            return Ok(());
        }
        settled.sort();
        // Header reads in parallel (a catch-up scan can settle thousands of files at once).
        type Identity = Result<(FileIdentity, Option<ParsedHeader>), DicomError>;
        let identities: Vec<Option<Identity>> = settled
            .par_iter()
            .map(|p| (!is_nifti(p)).then(|| identify_keeping(p)))
            .collect();
        let mut rows = Vec::new();
        let mut niftis = Vec::new();
        let mut rejected = Vec::new();
        for (p, identity) in settled.into_iter().zip(identities) {
            let c = self.candidates.remove(&p).expect("listed above");
            let path = p.to_string_lossy().to_string();
            let mut row = FileRow {
                path: path.clone(),
                size: c.size,
                mtime_ns: c.mtime,
                kind: FileKind::NotImage,
                series: None,
                sop: None,
                note: None,
            };
            if is_nifti(&p) {
                if self.cfg.nifti {
                    row.kind = FileKind::Nifti;
                    row.series = Some(format!("nifti:{path}"));
                    niftis.push(p);
                }
                rows.push(row);
                continue;
            }
            match identity.expect("DICOM candidates were identified") {
                Ok((
                    FileIdentity::Instance {
                        series_uid,
                        sop_uid,
                    },
                    header,
                )) => {
                    let series = hash_uid(&series_uid, "");
                    let sop = hash_uid(&sop_uid, "");
                    row.series = Some(series.clone());
                    row.sop = Some(sop.clone());
                    row.kind = self.take_instance(&p, &series, &sop, &c, header)?;
                }
                Ok((FileIdentity::NotImage(reason), _)) => {
                    self.ctx
                        .debug(&format!("not taken: {}: {reason}", p.display()));
                    row.note = Some(reason);
                }
                Err(e) => {
                    row.kind = FileKind::Rejected;
                    row.note = Some(e.to_string());
                    rejected.push((path.clone(), anyhow!("{e}")));
                }
            }
            rows.push(row);
        }
        // Recorded before anything is emitted or reported, so a crash never takes a file twice.
        self.journal.record_files(&rows)?;
        for (path, e) in rejected {
            self.stats.rejected += 1;
            out.item_error(&path, &path, &e.context("rejected file"))?;
        }
        for p in niftis {
            let version = self.next_version(&format!("nifti:{}", p.to_string_lossy()))?;
            self.emit_nifti(&p, version, None, false, out)?;
        }
        Ok(())
    }

    /// Adds a DICOM instance to its series; returns how the file is recorded.
    fn take_instance(
        &mut self,
        path: &Path,
        series: &str,
        sop: &str,
        file: &Candidate,
        header: Option<ParsedHeader>,
    ) -> Result<FileKind> {
        // When the instance landed: its last change as we saw it (so `stable_age` runs from
        // the landing, overlapping `settle`), or from its mtime for files found at start-up.
        let arrived = if file.catch_up {
            ago(age(file.mtime).min(self.cfg.stable_age))
        } else {
            file.since
        };
        if let Some(c) = self.collecting.get_mut(series) {
            if !c.sops.insert(sop.to_string()) {
                return Ok(self.duplicate(path));
            }
            c.last_new = c.last_new.max(arrived);
            c.headers.extend(header);
            return Ok(FileKind::Dicom);
        }
        if self.journal.has_instance(series, sop)? {
            return Ok(self.duplicate(path));
        }
        let version = self.next_version(series)?;
        if version > 1 {
            let stem = self
                .journal
                .latest(series)?
                .map(|r| r.stem)
                .unwrap_or_default();
            match self.cfg.late {
                LateRule::Ignore => {
                    self.ctx.warn(&format!(
                        "late instance {} for series {stem}, already emitted: ignored (late_instances: ignore)",
                        path.display()
                    ));
                    return Ok(FileKind::LateIgnored);
                }
                LateRule::NewVersion => self.ctx.warn(&format!(
                    "late instance {} for series {stem}, already emitted: the series will be emitted again as version {version}",
                    path.display()
                )),
            }
        }
        let mut sops = HashSet::new();
        sops.insert(sop.to_string());
        self.collecting.insert(
            series.to_string(),
            Collecting {
                sops,
                last_new: arrived,
                version,
                headers: header.into_iter().collect(),
            },
        );
        Ok(FileKind::Dicom)
    }

    fn duplicate(&mut self, path: &Path) -> FileKind {
        self.stats.duplicates += 1;
        self.ctx.info(&format!(
            "duplicate copy of an instance already taken (same SOPInstanceUID), dropped: {}",
            path.display()
        ));
        FileKind::Duplicate
    }

    /// Emits the series that have been quiet for `stable_age`, counted from the landing of the
    /// last file seen, settled or not.
    fn stable_pass(&mut self, out: &mut Emitter) -> Result<()> {
        let ready = ready_series(
            &self.collecting,
            self.candidates.values().map(|c| c.landed),
            self.cfg.stable_age,
            Instant::now(),
        );
        for series in ready {
            let c = self.collecting.remove(&series).expect("listed above");
            if let Some(p) = self.prepare_dicom(&series, c.version, None, false, c.headers, out)? {
                self.dispatch(p, out)?;
            }
        }
        Ok(())
    }

    /// A name no other series in the journal uses: `base`, `base_2`, ...; `stem_v2`... for
    /// later versions of a series.
    fn unique_stem(&self, series: &str, version: u32, base: &str) -> Result<String> {
        if version > 1
            && let Some(first) = self.journal.stem_of(series, 1)?
        {
            return Ok(format!("{first}_v{version}"));
        }
        let mut stem = base.to_string();
        let mut n = 1;
        while self.journal.stem_taken(&stem, series)? {
            n += 1;
            stem = format!("{base}_{n}");
        }
        Ok(stem)
    }

    fn emit_dicom(
        &mut self,
        series: &str,
        version: u32,
        stem: Option<String>,
        replay: bool,
        out: &mut Emitter,
    ) -> Result<()> {
        match self.prepare_dicom(series, version, stem, replay, Vec::new(), out)? {
            Some(p) => self.dispatch(p, out),
            None => Ok(()),
        }
    }

    /// Reads the headers of a series version, names it and records it as emitted. `None` when
    /// nothing in it can be read (recorded as failed and reported).
    fn prepare_dicom(
        &mut self,
        series: &str,
        version: u32,
        stem: Option<String>,
        replay: bool,
        headers: Vec<ParsedHeader>,
        out: &mut Emitter,
    ) -> Result<Option<Prepared>> {
        let listed = if replay {
            self.journal.files_of(series, Some(version))?
        } else {
            self.journal.files_of(series, None)?
        };
        let files: Vec<PathBuf> = listed
            .iter()
            .filter(|p| {
                let ok = p.is_file();
                if !ok {
                    self.ctx.warn(&format!(
                        "{} vanished before its series was read",
                        p.display()
                    ));
                }
                ok
            })
            .cloned()
            .collect();
        let rep = scan_with(&files, headers);
        for e in &rep.errors {
            self.ctx.warn(&e.to_string());
        }
        let mut planned = plan_series(rep.series, &self.cfg.name);
        let stem = match stem {
            Some(s) => s,
            None => {
                let base = planned.first().map_or("series", |p| p.stem.as_str());
                self.unique_stem(series, version, base)?
            }
        };
        for (i, p) in planned.iter_mut().enumerate() {
            p.stem = if i == 0 {
                stem.clone()
            } else {
                format!("{stem}_{}", i + 1)
            };
        }
        self.journal
            .mark_emitted(series, version, "dicom", &stem, &listed)?;
        if planned.is_empty() {
            let source = files
                .first()
                .and_then(|p| p.parent())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            // Reported first: with `on_error: fail` the run stops and the version stays
            // `emitted`, to be tried again on the next start.
            out.item_error(&stem, &source, &anyhow!("series {stem}: no readable image"))?;
            self.journal.mark_finished(
                series,
                version,
                SeriesState::Failed,
                Some("no readable image"),
            )?;
            self.stats.failed += 1;
            return Ok(None);
        }
        let fid = self.start_flight(series, version, stem, planned.len());
        let parts = planned
            .into_iter()
            .map(|p| {
                let key = if version > 1 {
                    format!("{}.v{version}", p.series.id)
                } else {
                    p.series.id.clone()
                };
                (key, Volume::Dicom(Box::new(p)))
            })
            .collect();
        Ok(Some(Prepared {
            fid,
            version,
            replay,
            parts,
        }))
    }

    /// Hands the parts of a prepared series to the decoder workers (or decodes them here when
    /// the stage has one worker).
    fn dispatch(&mut self, p: Prepared, out: &mut Emitter) -> Result<()> {
        for (key, volume) in p.parts {
            self.keys.insert(key.clone(), p.fid.clone());
            let mut job = DecodeJob {
                fid: p.fid.clone(),
                key,
                volume,
                version: p.version,
                replay: p.replay,
            };
            if self.parallel <= 1 {
                let result = self.cfg.decode_and_emit(self.ctx, out, &job);
                self.handle_report(DecodeReport {
                    fid: job.fid,
                    key: job.key,
                    result,
                })?;
                continue;
            }
            // The queue holds one job: while the decoders are busy, keep journaling what ends.
            loop {
                match self.cfg.jobs.0.send_timeout(job, Duration::from_millis(50)) {
                    Ok(()) => break,
                    Err(SendTimeoutError::Timeout(j)) => {
                        job = j;
                        self.completions(out)?;
                        if self.ctx.is_cancelled() {
                            self.handle_report(DecodeReport {
                                fid: job.fid,
                                key: job.key,
                                result: Decoded::Abandoned,
                            })?;
                            return Err(Cancelled.into());
                        }
                    }
                    Err(SendTimeoutError::Disconnected(_)) => bail!("decoder queue closed"),
                }
            }
        }
        Ok(())
    }

    fn handle_report(&mut self, r: DecodeReport) -> Result<()> {
        let outcome = match r.result {
            Decoded::Sent => return Ok(()),
            Decoded::Failed => Outcome::Failed,
            Decoded::Abandoned => Outcome::Abandoned,
        };
        // A sent item may have completed already (abandoned on the way): count it once.
        if self.keys.remove(&r.key).is_some() {
            self.flight_part_ended(&r.fid, outcome)?;
        }
        Ok(())
    }

    fn emit_nifti(
        &mut self,
        path: &Path,
        version: u32,
        stem: Option<String>,
        replay: bool,
        out: &mut Emitter,
    ) -> Result<()> {
        let series = format!("nifti:{}", path.to_string_lossy());
        let stem = match stem {
            Some(s) => s,
            None => {
                let base = mindscan_nifti::item::stem(path);
                self.unique_stem(&series, version, &base)?
            }
        };
        self.journal
            .mark_emitted(&series, version, "nifti", &stem, &[path.to_path_buf()])?;
        let fid = self.start_flight(&series, version, stem.clone(), 1);
        let key = if version > 1 {
            format!("{}#v{version}", path.display())
        } else {
            path.display().to_string()
        };
        let volume = Volume::Nifti {
            path: path.to_path_buf(),
            stem,
        };
        self.dispatch(
            Prepared {
                fid,
                version,
                replay,
                parts: vec![(key, volume)],
            },
            out,
        )
    }

    /// Starts waiting for the `parts` items of a series version; returns its flight id.
    fn start_flight(&mut self, series: &str, version: u32, stem: String, parts: usize) -> String {
        let fid = flight_id(series, version);
        self.flights.insert(
            fid.clone(),
            Flight {
                series: series.to_string(),
                version,
                stem,
                remaining: parts,
                outcome: Outcome::Done,
            },
        );
        fid
    }

    /// One item of a flight ended; when it was the last, the journal records the outcome.
    fn flight_part_ended(&mut self, fid: &str, outcome: Outcome) -> Result<()> {
        let Some(f) = self.flights.get_mut(fid) else {
            return Ok(());
        };
        f.remaining = f.remaining.saturating_sub(1);
        f.outcome = match (f.outcome, outcome) {
            (Outcome::Failed, _) | (_, Outcome::Failed) => Outcome::Failed,
            (Outcome::Abandoned, _) | (_, Outcome::Abandoned) => Outcome::Abandoned,
            _ => Outcome::Done,
        };
        if f.remaining > 0 {
            return Ok(());
        }
        let f = self.flights.remove(fid).expect("present");
        match f.outcome {
            Outcome::Done => {
                self.journal
                    .mark_finished(&f.series, f.version, SeriesState::Done, None)?;
                self.stats.done += 1;
                self.ctx.info(&format!("{}: every output written", f.stem));
            }
            Outcome::Failed => {
                self.journal.mark_finished(
                    &f.series,
                    f.version,
                    SeriesState::Failed,
                    Some("a stage reported an error (see the log or the dead-letter file)"),
                )?;
                self.stats.failed += 1;
            }
            // Left `emitted`: the next run replays it.
            Outcome::Abandoned => {}
        }
        Ok(())
    }

    fn completions(&mut self, out: &mut Emitter) -> Result<()> {
        while let Ok(r) = self.cfg.reports.1.try_recv() {
            self.handle_report(r)?;
        }
        for (key, outcome) in out.take_completed() {
            if let Some(fid) = self.keys.remove(&key) {
                self.flight_part_ended(&fid, outcome)?;
            }
        }
        Ok(())
    }

    /// Waits for the items in flight, so their outcome reaches the journal before we stop.
    fn drain(&mut self, out: &mut Emitter) {
        while !self.flights.is_empty() {
            if let Err(e) = self.completions(out) {
                self.ctx.error(&format!("journal: {e:#}"));
                return;
            }
            if self.flights.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn summary(&self) {
        let s = &self.stats;
        let mut line = format!(
            "this run: {} series done, {} failed, {} replayed after an interruption, {} duplicate file(s) dropped, {} file(s) rejected",
            s.done, s.failed, s.replayed, s.duplicates, s.rejected
        );
        if !self.collecting.is_empty() {
            line.push_str(&format!(
                "; {} series still collecting (resumed on the next run)",
                self.collecting.len()
            ));
        }
        if let Ok(t) = self.journal.totals() {
            line.push_str(&format!(
                "; journal: {} done, {} failed, {} to replay, {} files",
                t.done, t.failed, t.pending, t.files
            ));
        }
        self.ctx.info(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collecting(last_new: Instant) -> HashMap<String, Collecting> {
        HashMap::from([(
            "s1".to_string(),
            Collecting {
                sops: HashSet::new(),
                last_new,
                version: 1,
                headers: Vec::new(),
            },
        )])
    }

    /// settle 2 s, stable_age 6 s: the first instance landed at t0, the second at t0 + 5 s
    /// (a gap just under stable_age) and is still settling at t0 + 6 s, when the first alone
    /// used to go out.
    #[test]
    fn a_file_still_settling_that_landed_within_stable_age_holds_the_series() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let stable_age = Duration::from_secs(6);
        let c = collecting(t0);
        let none: [Instant; 0] = [];
        assert!(ready_series(&c, none.into_iter(), stable_age, s(5)).is_empty());
        assert_eq!(ready_series(&c, none.into_iter(), stable_age, s(6)), ["s1"]);
        // The second file is held until it settles (it then joins the series, whose clock
        // restarts at its landing)...
        assert!(ready_series(&c, [s(5)].into_iter(), stable_age, s(6)).is_empty());
        assert!(ready_series(&c, [s(5)].into_iter(), stable_age, s(7)).is_empty());
        // ... or, if it never settles, until stable_age after its own landing.
        assert_eq!(
            ready_series(&c, [s(5)].into_iter(), stable_age, s(11)),
            ["s1"]
        );
        // A file that landed after the series was due holds nothing.
        assert_eq!(
            ready_series(&c, [s(6)].into_iter(), stable_age, s(7)),
            ["s1"]
        );
        assert_eq!(
            ready_series(&c, [s(7), s(4)].into_iter(), stable_age, s(8)),
            Vec::<String>::new()
        );
    }
}
