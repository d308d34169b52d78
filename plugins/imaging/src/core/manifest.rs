//! Streaming dataset manifest writer (CSV or JSON Lines).
//!
//! Rows are written as they are appended (nothing is buffered beyond an I/O
//! buffer) into `.<name>.tmp-<pid>-<n>` in the destination folder; [`ManifestWriter::finish`]
//! flushes and renames it to the final name. Dropping an unfinished writer removes
//! the temporary file. `path` values are relative to the manifest's folder with
//! `/` separators, so a PyTorch `Dataset` can do `os.path.join(root, row["path"])`.
//!
//! Columns, in order: [`COLUMNS`]. In CSV an absent `frame`, `seed`, `augment` or `diffusion` is an empty
//! field; in JSONL it is `null`.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use super::fsio::temp_path_for;

/// Manifest columns, in order.
pub const COLUMNS: [&str; 15] = [
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
    "volume",
    "augment",
    "diffusion",
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
    /// Key of the volume the image was cut from (unique per source item).
    #[serde(default)]
    pub volume: String,
    /// How an `augment` stage made this image (seed, variant, every parameter drawn): JSON,
    /// enough to regenerate it (`augment`'s `replay`). Absent for images not augmented.
    #[serde(default)]
    pub augment: Option<serde_json::Value>,
    /// How a diffusion stage made this image (seed, sampler, steps, eta, strength, class, the
    /// weights' SHA-256): JSON. Absent for images not synthesised.
    #[serde(default)]
    pub diffusion: Option<serde_json::Value>,
}

/// Streaming manifest writer; see the module docs.
#[derive(Debug)]
pub struct ManifestWriter {
    final_path: PathBuf,
    tmp_path: PathBuf,
    out: Option<BufWriter<fs::File>>,
    format: ManifestFormat,
    rows: u64,
    /// Appending in place to the final file (see [`ManifestWriter::open_append`]).
    live: Option<fs::File>,
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
    let fields: [String; 15] = [
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
        row.volume.clone(),
        opt(row.augment.as_ref().map(|a| a.to_string())),
        opt(row.diffusion.as_ref().map(|a| a.to_string())),
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
            live: None,
        };
        if format == ManifestFormat::Csv {
            let header = COLUMNS.join(",") + "\n";
            w.writer()?.write_all(header.as_bytes())?;
        }
        Ok(w)
    }

    /// Opens `path` to add rows in place, keeping those of earlier runs: each row is one
    /// `write` on an `O_APPEND` file, so the manifest is complete at every moment and a crash
    /// can only leave a torn last line, which is cut here on the next open. Creates the file
    /// (with the CSV header) when missing.
    pub fn open_append(path: &Path, format: ManifestFormat) -> io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        cut_torn_tail(&mut file)?;
        if file.metadata()?.len() == 0 && format == ManifestFormat::Csv {
            file.write_all((COLUMNS.join(",") + "\n").as_bytes())?;
        }
        drop(file);
        let live = fs::OpenOptions::new().append(true).open(path)?;
        Ok(ManifestWriter {
            final_path: path.to_path_buf(),
            tmp_path: PathBuf::new(),
            out: None,
            format,
            rows: 0,
            live: Some(live),
        })
    }

    /// Appending mode: removes every row whose `volume` is `volume` (rows an interrupted run
    /// wrote for a volume that is now processed again). Rewrites the file under a temporary
    /// name, then renames it, streaming (memory does not grow with the manifest).
    pub fn remove_volume(&mut self, volume: &str) -> io::Result<usize> {
        use std::io::BufRead;
        if self.live.is_none() {
            return Err(io::Error::other(
                "remove_volume needs a manifest opened for appending",
            ));
        }
        let tmp = temp_path_for(&self.final_path)?;
        let mut removed = 0;
        let result = (|| {
            let input = io::BufReader::new(fs::File::open(&self.final_path)?);
            let mut outw = BufWriter::new(fs::File::create(&tmp)?);
            for (i, line) in input.lines().enumerate() {
                let line = line?;
                let is_header = i == 0 && self.format == ManifestFormat::Csv;
                if !is_header && row_volume(self.format, &line).as_deref() == Some(volume) {
                    removed += 1;
                    continue;
                }
                outw.write_all(line.as_bytes())?;
                outw.write_all(b"\n")?;
            }
            let f = outw.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.final_path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.live = Some(fs::OpenOptions::new().append(true).open(&self.final_path)?);
        Ok(removed)
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
        match &mut self.live {
            // One write per row: appends never interleave half rows.
            Some(f) => f.write_all(line.as_bytes())?,
            None => self.writer()?.write_all(line.as_bytes())?,
        }
        self.rows += 1;
        Ok(())
    }

    /// Flushes, closes and renames the manifest to its final name.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        if let Some(f) = self.live.take() {
            f.sync_all()?;
            return Ok(self.final_path.clone());
        }
        let out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("manifest writer already finished"))?;
        let done = (|| {
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            fs::rename(&self.tmp_path, &self.final_path)
        })();
        // A manifest that could not be finished (a full disk) leaves no temporary behind.
        if let Err(e) = done {
            let _ = fs::remove_file(&self.tmp_path);
            return Err(e);
        }
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

/// Cuts a last line without its newline (a row being written when the process died).
fn cut_torn_tail(file: &mut fs::File) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Rows are short: look back at most 64 KiB for the last newline.
    let back = len.min(64 << 10);
    file.seek(SeekFrom::Start(len - back))?;
    let mut tail = Vec::with_capacity(back as usize);
    file.read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => len - back + i as u64 + 1,
        None if back == len => 0,
        None => return Err(io::Error::other("manifest has a last line over 64 KiB")),
    };
    file.set_len(keep)
}

/// The `volume` of one manifest line (its CSV field, or the JSON field).
fn row_volume(format: ManifestFormat, line: &str) -> Option<String> {
    match format {
        ManifestFormat::Jsonl => serde_json::from_str::<ManifestRow>(line)
            .ok()
            .map(|r| r.volume),
        ManifestFormat::Csv => {
            let at = COLUMNS.iter().position(|c| *c == "volume")?;
            csv_fields(line).into_iter().nth(at)
        }
    }
}

/// Splits one CSV line as [`csv_line`] writes it (quotes around fields with `,` or `"`).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, volume: &str) -> ManifestRow {
        ManifestRow {
            path: path.into(),
            source: "/in".into(),
            volume: volume.into(),
            plane: "axial".into(),
            index: 1,
            frame: Some(0),
            rows: 2,
            cols: 2,
            spacing_row: 1.0,
            spacing_col: 1.0,
            window_lo: 0.0,
            window_hi: 1.0,
            seed: Some(7),
            augment: None,
            diffusion: None,
        }
    }

    #[test]
    fn appending_keeps_earlier_rows_cuts_a_torn_line_and_replaces_a_volume() {
        let dir = tempfile::tempdir().unwrap();
        for (name, format) in [
            ("m.csv", ManifestFormat::Csv),
            ("m.jsonl", ManifestFormat::Jsonl),
        ] {
            let path = dir.path().join(name);
            let mut w = ManifestWriter::open_append(&path, format).unwrap();
            w.append(&row("a/1.jpg", "/in/a, \"x\"")).unwrap();
            w.append(&row("b/1.jpg", "/in/b")).unwrap();
            drop(w);
            // A crash in the middle of a row.
            let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(b"c/1.jpg,/in/c,ax").unwrap();
            drop(f);

            let mut w = ManifestWriter::open_append(&path, format).unwrap();
            let removed = w.remove_volume("/in/a, \"x\"").unwrap();
            assert_eq!(removed, 1, "{name}");
            w.append(&row("a/1.jpg", "/in/a, \"x\"")).unwrap();
            w.finish().unwrap();

            let text = fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let header = usize::from(format == ManifestFormat::Csv);
            assert_eq!(lines.len(), header + 2, "{name}: {text}");
            assert!(text.ends_with('\n'));
            assert!(!text.contains("c/1.jpg"), "{name}: torn line kept");
            assert_eq!(
                lines[header..]
                    .iter()
                    .filter(|l| row_volume(format, l).as_deref() == Some("/in/a, \"x\""))
                    .count(),
                1,
                "{name}"
            );
        }
    }
}
