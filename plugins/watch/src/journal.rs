//! The watch source's durable journal: one SQLite database per watch stage.
//!
//! Why SQLite (through rusqlite, compiled from source): atomic multi-row transactions with a
//! write-ahead log survive `kill -9` and power loss (`synchronous = FULL`), the state of a running
//! ingestion can be read with the stock `sqlite3` shell while it runs, and the indexed lookups
//! keep memory flat however many files have been seen (nothing is cached in the process).
//!
//! Tables:
//! * `files`: every settled file: size and mtime when taken, what it is (`dicom`, `nifti`,
//!   `duplicate`, `not_image`, `rejected`, `late_ignored`), its series and SOP instance, and the
//!   series version it first went out in (NULL while its series is still collecting).
//! * `series`: one row per emitted version of a series: `emitted` until every stage downstream
//!   has handled it, then `done` or `failed`. A row left `emitted` by a crash is replayed.
//! * `members`: the files each version was built from, recorded with the version, so a replay
//!   reads exactly those (a late instance journaled meanwhile waits for the next version).
//!
//! DICOM series are keyed by the hashed SeriesInstanceUID (`2.25.…`), never the raw UID.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use rusqlite::{Connection, OptionalExtension, params};

/// What a settled file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dicom,
    Nifti,
    /// A second copy of an instance already taken (same SOPInstanceUID).
    Duplicate,
    /// Not DICOM / NIfTI, or DICOM without an image.
    NotImage,
    /// Could not be read (reported through the stage's `on_error`).
    Rejected,
    /// A new instance of an already emitted series, ignored by `late_instances: ignore`.
    LateIgnored,
}

impl FileKind {
    fn as_str(self) -> &'static str {
        match self {
            FileKind::Dicom => "dicom",
            FileKind::Nifti => "nifti",
            FileKind::Duplicate => "duplicate",
            FileKind::NotImage => "not_image",
            FileKind::Rejected => "rejected",
            FileKind::LateIgnored => "late_ignored",
        }
    }
}

/// One settled file, as recorded.
#[derive(Debug, Clone)]
pub struct FileRow {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub kind: FileKind,
    pub series: Option<String>,
    pub sop: Option<String>,
    pub note: Option<String>,
}

/// State of one emitted series version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesState {
    Emitted,
    Done,
    Failed,
}

impl SeriesState {
    fn as_str(self) -> &'static str {
        match self {
            SeriesState::Emitted => "emitted",
            SeriesState::Done => "done",
            SeriesState::Failed => "failed",
        }
    }
    fn parse(s: &str) -> SeriesState {
        match s {
            "done" => SeriesState::Done,
            "failed" => SeriesState::Failed,
            _ => SeriesState::Emitted,
        }
    }
}

/// One emitted series version.
#[derive(Debug, Clone)]
pub struct SeriesRow {
    pub series: String,
    pub version: u32,
    pub kind: String,
    pub stem: String,
    pub state: SeriesState,
}

/// Counts for the end-of-run summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub done: u64,
    pub failed: u64,
    pub pending: u64,
    pub files: u64,
    pub rejected: u64,
    pub duplicates: u64,
}

pub struct Journal {
    conn: Connection,
    path: PathBuf,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Journal {
    /// Opens (creating if needed) `dir/journal.sqlite`.
    pub fn open(dir: &Path) -> Result<Journal> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the state folder", dir.display()))?;
        let path = dir.join("journal.sqlite");
        let conn = Connection::open(&path)
            .with_context(|| format!("{}: cannot open the journal", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS files (
                path TEXT PRIMARY KEY,
                size INTEGER NOT NULL,
                mtime_ns INTEGER NOT NULL,
                kind TEXT NOT NULL,
                series TEXT,
                sop TEXT,
                version INTEGER,
                note TEXT,
                seen_at REAL NOT NULL
            );
            CREATE INDEX IF NOT EXISTS files_by_series ON files(series, sop);
            CREATE TABLE IF NOT EXISTS series (
                series TEXT NOT NULL,
                version INTEGER NOT NULL,
                kind TEXT NOT NULL,
                stem TEXT NOT NULL,
                state TEXT NOT NULL,
                files INTEGER NOT NULL,
                emitted_at REAL NOT NULL,
                finished_at REAL,
                error TEXT,
                PRIMARY KEY (series, version)
            );
            CREATE TABLE IF NOT EXISTS members (
                series TEXT NOT NULL,
                version INTEGER NOT NULL,
                path TEXT NOT NULL,
                PRIMARY KEY (series, version, path)
            );
            CREATE INDEX IF NOT EXISTS series_by_stem ON series(stem);
            CREATE INDEX IF NOT EXISTS series_by_state ON series(state);",
        )
        .with_context(|| format!("{}: cannot set up the journal", path.display()))?;
        Ok(Journal { conn, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `path` was already taken with this exact size and mtime.
    pub fn known(&self, path: &str, size: u64, mtime_ns: i64) -> Result<bool> {
        let mut st = self.conn.prepare_cached(
            "SELECT 1 FROM files WHERE path = ?1 AND size = ?2 AND mtime_ns = ?3",
        )?;
        Ok(st.exists(params![path, size as i64, mtime_ns])?)
    }

    /// Records settled files, in one transaction.
    pub fn record_files(&mut self, rows: &[FileRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO files (path, size, mtime_ns, kind, series, sop, version, note, seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8)",
            )?;
            let t = now();
            for r in rows {
                st.execute(params![
                    r.path,
                    r.size as i64,
                    r.mtime_ns,
                    r.kind.as_str(),
                    r.series,
                    r.sop,
                    r.note,
                    t
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Whether an instance with this SOPInstanceUID was already taken for the series.
    pub fn has_instance(&self, series: &str, sop: &str) -> Result<bool> {
        let mut st = self.conn.prepare_cached(
            "SELECT 1 FROM files WHERE series = ?1 AND sop = ?2 AND kind = 'dicom'",
        )?;
        Ok(st.exists(params![series, sop])?)
    }

    /// The latest emitted version of a series, if any.
    pub fn latest(&self, series: &str) -> Result<Option<SeriesRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT series, version, kind, stem, state FROM series WHERE series = ?1
             ORDER BY version DESC LIMIT 1",
        )?;
        Ok(st.query_row(params![series], row_to_series).optional()?)
    }

    /// The output name a series version went out under.
    pub fn stem_of(&self, series: &str, version: u32) -> Result<Option<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT stem FROM series WHERE series = ?1 AND version = ?2")?;
        Ok(st
            .query_row(params![series, version], |r| r.get(0))
            .optional()?)
    }

    /// Whether another series already uses this output name.
    pub fn stem_taken(&self, stem: &str, series: &str) -> Result<bool> {
        let mut st = self
            .conn
            .prepare_cached("SELECT 1 FROM series WHERE stem = ?1 AND series <> ?2")?;
        Ok(st.exists(params![stem, series])?)
    }

    /// Records that `version` of `series` goes out now, built from `files`: they become its
    /// members, and those not yet in an earlier version get this version. Committed before the
    /// item is emitted, so a crash from here on replays it, from the same files. A replay calls
    /// it again with the members it read: nothing else is claimed.
    pub fn mark_emitted(
        &mut self,
        series: &str,
        version: u32,
        kind: &str,
        stem: &str,
        files: &[PathBuf],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO series (series, version, kind, stem, state, files, emitted_at)
             VALUES (?1, ?2, ?3, ?4, 'emitted', ?5, ?6)",
            params![series, version, kind, stem, files.len() as i64, now()],
        )?;
        {
            let mut member = tx.prepare_cached(
                "INSERT OR IGNORE INTO members (series, version, path) VALUES (?1, ?2, ?3)",
            )?;
            let mut claim = tx.prepare_cached(
                "UPDATE files SET version = ?2 WHERE path = ?3 AND series = ?1
                 AND version IS NULL AND kind IN ('dicom', 'nifti')",
            )?;
            for f in files {
                let path = f.to_string_lossy();
                member.execute(params![series, version, path])?;
                claim.execute(params![series, version, path])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records how a series version ended.
    pub fn mark_finished(
        &mut self,
        series: &str,
        version: u32,
        state: SeriesState,
        error: Option<&str>,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE series SET state = ?3, finished_at = ?4, error = ?5
             WHERE series = ?1 AND version = ?2",
            params![series, version, state.as_str(), now(), error],
        )?;
        Ok(())
    }

    /// Series versions that were emitted but never finished (a crash or kill): to replay.
    pub fn unfinished(&self) -> Result<Vec<SeriesRow>> {
        let mut st = self.conn.prepare(
            "SELECT series, version, kind, stem, state FROM series WHERE state = 'emitted'
             ORDER BY emitted_at",
        )?;
        let rows = st.query_map([], row_to_series)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The files a series version was built from (`Some`), or every instance file of the series,
    /// emitted or not (`None`).
    pub fn files_of(&self, series: &str, version: Option<u32>) -> Result<Vec<PathBuf>> {
        let to_paths = |st: &mut rusqlite::CachedStatement, v: Option<u32>| -> Result<Vec<_>> {
            let rows = st.query_map(params![series, v], |r| {
                r.get::<_, String>(0).map(PathBuf::from)
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<PathBuf>>>()?)
        };
        if let Some(v) = version {
            let mut st = self.conn.prepare_cached(
                "SELECT path FROM members WHERE series = ?1 AND version = ?2 ORDER BY path",
            )?;
            let members = to_paths(&mut st, Some(v))?;
            if !members.is_empty() {
                return Ok(members);
            }
            // A journal written before members were recorded: the files first sent out in this
            // version or an earlier one.
        }
        let mut st = self.conn.prepare_cached(
            "SELECT path FROM files WHERE series = ?1 AND kind IN ('dicom', 'nifti')
             AND (?2 IS NULL OR (version IS NOT NULL AND version <= ?2)) ORDER BY path",
        )?;
        to_paths(&mut st, version)
    }

    /// DICOM instances taken but not yet emitted (their series was still collecting):
    /// (series, path, sop, mtime_ns).
    pub fn collecting(&self) -> Result<Vec<(String, PathBuf, String, i64)>> {
        let mut st = self.conn.prepare(
            "SELECT series, path, sop, mtime_ns FROM files
             WHERE kind = 'dicom' AND version IS NULL ORDER BY series",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                PathBuf::from(r.get::<_, String>(1)?),
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn totals(&self) -> Result<Totals> {
        let count = |sql: &str| -> Result<u64> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
        };
        Ok(Totals {
            done: count("SELECT COUNT(*) FROM series WHERE state = 'done'")?,
            failed: count("SELECT COUNT(*) FROM series WHERE state = 'failed'")?,
            pending: count("SELECT COUNT(*) FROM series WHERE state = 'emitted'")?,
            files: count("SELECT COUNT(*) FROM files WHERE kind IN ('dicom', 'nifti')")?,
            rejected: count("SELECT COUNT(*) FROM files WHERE kind = 'rejected'")?,
            duplicates: count("SELECT COUNT(*) FROM files WHERE kind = 'duplicate'")?,
        })
    }
}

fn row_to_series(r: &rusqlite::Row) -> rusqlite::Result<SeriesRow> {
    Ok(SeriesRow {
        series: r.get(0)?,
        version: r.get::<_, i64>(1)? as u32,
        kind: r.get(2)?,
        stem: r.get(3)?,
        state: SeriesState::parse(&r.get::<_, String>(4)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, series: &str, sop: &str) -> FileRow {
        FileRow {
            path: path.into(),
            size: 10,
            mtime_ns: 5,
            kind: FileKind::Dicom,
            series: Some(series.into()),
            sop: Some(sop.into()),
            note: None,
        }
    }

    fn paths(p: &[&str]) -> Vec<PathBuf> {
        p.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn a_series_goes_from_collecting_to_emitted_to_done_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.record_files(&[row("/a/1", "s1", "i1"), row("/a/2", "s1", "i2")])
            .unwrap();
        assert!(j.known("/a/1", 10, 5).unwrap());
        assert!(!j.known("/a/1", 11, 5).unwrap(), "a changed size is new");
        assert!(j.has_instance("s1", "i2").unwrap());
        assert_eq!(j.collecting().unwrap().len(), 2);
        j.mark_emitted("s1", 1, "dicom", "T1_5", &paths(&["/a/1", "/a/2"]))
            .unwrap();
        assert!(j.collecting().unwrap().is_empty());
        drop(j);

        // As after a kill: the emitted version is to be replayed, with its files.
        let mut j = Journal::open(dir.path()).unwrap();
        let open = j.unfinished().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!((open[0].series.as_str(), open[0].version), ("s1", 1));
        assert_eq!(j.files_of("s1", Some(1)).unwrap().len(), 2);
        j.mark_finished("s1", 1, SeriesState::Done, None).unwrap();
        assert!(j.unfinished().unwrap().is_empty());

        // A late instance goes into version 2 only.
        j.record_files(&[row("/a/3", "s1", "i3")]).unwrap();
        assert_eq!(j.files_of("s1", Some(1)).unwrap().len(), 2);
        assert_eq!(j.files_of("s1", None).unwrap().len(), 3);
        j.mark_emitted(
            "s1",
            2,
            "dicom",
            "T1_5_v2",
            &paths(&["/a/1", "/a/2", "/a/3"]),
        )
        .unwrap();
        assert_eq!(j.files_of("s1", Some(2)).unwrap().len(), 3);
        assert_eq!(j.latest("s1").unwrap().unwrap().version, 2);
        assert!(j.stem_taken("T1_5", "s2").unwrap());
        assert!(!j.stem_taken("T1_5", "s1").unwrap());
        let t = j.totals().unwrap();
        assert_eq!((t.done, t.pending, t.files), (1, 1, 3));
    }

    /// v1 is still `emitted` when a late instance is journaled (no version yet); the process is
    /// killed; the restart replays v1, which must not take the late file: it waits for v2.
    #[test]
    fn a_replay_reads_only_its_own_members_and_leaves_a_late_instance_for_the_next_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.record_files(&[row("/a/1", "s1", "i1")]).unwrap();
        j.mark_emitted("s1", 1, "dicom", "T1", &paths(&["/a/1"]))
            .unwrap();
        j.record_files(&[row("/a/2", "s1", "i2")]).unwrap();
        drop(j); // SIGKILL

        let mut j = Journal::open(dir.path()).unwrap();
        let replay = &j.unfinished().unwrap()[0];
        assert_eq!(replay.version, 1);
        let members = j.files_of("s1", Some(1)).unwrap();
        assert_eq!(members, paths(&["/a/1"]));
        j.mark_emitted("s1", 1, "dicom", "T1", &members).unwrap();
        let waiting: Vec<PathBuf> = j.collecting().unwrap().into_iter().map(|c| c.1).collect();
        assert_eq!(
            waiting,
            paths(&["/a/2"]),
            "the late instance still waits for v2"
        );
        assert_eq!(j.files_of("s1", Some(1)).unwrap(), paths(&["/a/1"]));
        let all = j.files_of("s1", None).unwrap();
        j.mark_emitted("s1", 2, "dicom", "T1_v2", &all).unwrap();
        assert!(j.collecting().unwrap().is_empty());
        assert_eq!(j.files_of("s1", Some(2)).unwrap(), paths(&["/a/1", "/a/2"]));
    }
}
