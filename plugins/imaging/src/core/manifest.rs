//! Streaming dataset manifest writer (CSV or JSON Lines).
//!
//! Rows are written as they are appended (nothing is buffered beyond an I/O
//! buffer) into `.<name>.tmp-<pid>-<n>` in the destination folder; [`ManifestWriter::finish`]
//! flushes and renames it to the final name. Dropping an unfinished writer removes
//! the temporary file. `path` values are relative to the manifest's folder with
//! `/` separators, so a PyTorch `Dataset` can do `os.path.join(root, row["path"])`.
//!
//! Columns, in order: [`COLUMNS`]. In CSV an absent `frame` or `seed` is an empty
//! field; in JSONL it is `null`.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use super::fsio::temp_path_for;

/// Manifest columns, in order.
pub const COLUMNS: [&str; 12] = [
    "path",
    "source",
    "plane",
    "index",
    "frame",
    "rows",
    "cols",
    "spacing_row",
    "spacing_col",
    "window_lo",
    "window_hi",
    "seed",
];

/// Manifest file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestFormat {
    Csv,
    Jsonl,
}

impl ManifestFormat {
    /// Format from the file extension: `.csv`, or `.jsonl` / `.ndjson`.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(ManifestFormat::Csv),
            "jsonl" | "ndjson" => Some(ManifestFormat::Jsonl),
            _ => None,
        }
    }
}

/// One manifest row (one written image).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ManifestRow {
    /// Image path relative to the manifest's folder, `/`-separated.
    pub path: String,
    /// Source scan (as given by the caller).
    pub source: String,
    pub plane: String,
    pub index: usize,
    pub frame: Option<usize>,
    pub rows: usize,
    pub cols: usize,
    pub spacing_row: f64,
    pub spacing_col: f64,
    pub window_lo: f64,
    pub window_hi: f64,
    pub seed: Option<u64>,
}

/// Streaming manifest writer; see the module docs.
#[derive(Debug)]
pub struct ManifestWriter {
    final_path: PathBuf,
    tmp_path: PathBuf,
    out: Option<BufWriter<fs::File>>,
    format: ManifestFormat,
    rows: u64,
}

fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn csv_line(row: &ManifestRow) -> String {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let fields: [String; 12] = [
        row.path.clone(),
        row.source.clone(),
        row.plane.clone(),
        row.index.to_string(),
        opt(row.frame.map(|f| f.to_string())),
        row.rows.to_string(),
        row.cols.to_string(),
        row.spacing_row.to_string(),
        row.spacing_col.to_string(),
        row.window_lo.to_string(),
        row.window_hi.to_string(),
        opt(row.seed.map(|s| s.to_string())),
    ];
    let mut line = String::with_capacity(128);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        csv_field(&mut line, f);
    }
    line.push('\n');
    line
}

impl ManifestWriter {
    /// Starts a manifest that will be renamed to `path` on [`finish`](Self::finish).
    /// Creates the parent folder; writes the CSV header immediately.
    pub fn create(path: &Path, format: ManifestFormat) -> io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        let tmp_path = temp_path_for(path)?;
        let file = fs::File::create(&tmp_path)?;
        let mut w = ManifestWriter {
            final_path: path.to_path_buf(),
            tmp_path,
            out: Some(BufWriter::new(file)),
            format,
            rows: 0,
        };
        if format == ManifestFormat::Csv {
            let header = COLUMNS.join(",") + "\n";
            w.writer()?.write_all(header.as_bytes())?;
        }
        Ok(w)
    }

    fn writer(&mut self) -> io::Result<&mut BufWriter<fs::File>> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("manifest writer already finished"))
    }

    /// Folder that row paths are relative to.
    pub fn dir(&self) -> &Path {
        self.final_path.parent().unwrap_or(Path::new(""))
    }

    /// Number of rows appended so far.
    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// Appends one row.
    pub fn append(&mut self, row: &ManifestRow) -> io::Result<()> {
        let line = match self.format {
            ManifestFormat::Csv => csv_line(row),
            ManifestFormat::Jsonl => {
                let mut s = serde_json::to_string(row).map_err(io::Error::other)?;
                s.push('\n');
                s
            }
        };
        self.writer()?.write_all(line.as_bytes())?;
        self.rows += 1;
        Ok(())
    }

    /// Flushes, closes and renames the manifest to its final name.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        let out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("manifest writer already finished"))?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp_path, &self.final_path)?;
        Ok(self.final_path.clone())
    }
}

impl Drop for ManifestWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

/// `file` relative to `dir` with `/` separators, when `file` is inside `dir`
/// (both taken lexically, as given).
pub fn relative_path(dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(dir).ok()?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}
