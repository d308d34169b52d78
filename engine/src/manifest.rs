//! `mindscan manifest merge DIR`: joins the manifest parts the shards of a split run wrote
//! (`manifest.shard-I-of-N.csv` / `.jsonl`, see `--shard`) into `manifest.csv` /
//! `manifest.jsonl`. Every part must be there; an image path in two parts is an error (two
//! shards wrote the same file). Rows come out sorted by path, so the merged manifest does not
//! depend on which shard finished first. The parts are left in place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// What a merge wrote: the merged manifest and its row count, per format.
#[derive(Debug)]
pub struct Merged {
    pub path: PathBuf,
    pub parts: u32,
    pub rows: usize,
}

/// Merges every manifest format that has parts in `dir`.
pub fn merge(dir: &Path) -> Result<Vec<Merged>> {
    let mut merged = Vec::new();
    for (stem, ext) in [("manifest", "csv"), ("manifest", "jsonl")] {
        if let Some(m) = merge_one(dir, stem, ext)? {
            merged.push(m);
        }
    }
    if merged.is_empty() {
        bail!(
            "{}: no manifest parts (manifest.shard-I-of-N.csv or .jsonl) to merge",
            dir.display()
        );
    }
    Ok(merged)
}

/// The parts of `<stem>.*.<ext>` in `dir`: shard index → file, and the shard count.
fn parts(dir: &Path, stem: &str, ext: &str) -> Result<Option<(u32, BTreeMap<u32, PathBuf>)>> {
    let mut found: BTreeMap<u32, PathBuf> = BTreeMap::new();
    let mut count = None;
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(tag) = name
            .strip_prefix(&format!("{stem}.shard-"))
            .and_then(|r| r.strip_suffix(&format!(".{ext}")))
        else {
            continue;
        };
        let Some((i, n)) = tag.split_once("-of-") else {
            continue;
        };
        let (Ok(i), Ok(n)) = (i.parse::<u32>(), n.parse::<u32>()) else {
            continue;
        };
        if *count.get_or_insert(n) != n {
            bail!(
                "{}: parts of different splits ({} and {n} shards): remove the stale ones",
                dir.display(),
                count.unwrap()
            );
        }
        found.insert(i, e.path());
    }
    Ok(count.map(|n| (n, found)))
}

fn merge_one(dir: &Path, stem: &str, ext: &str) -> Result<Option<Merged>> {
    let Some((count, found)) = parts(dir, stem, ext)? else {
        return Ok(None);
    };
    let missing: Vec<String> = (0..count)
        .filter(|i| !found.contains_key(i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: {stem}.{ext} has {count} shards, but the parts of shard(s) {} are missing (did those shards finish?)",
            dir.display(),
            missing.join(", ")
        );
    }
    let mut header: Option<String> = None;
    // Image path → (row, part it came from).
    let mut rows: BTreeMap<String, (String, u32)> = BTreeMap::new();
    for (&i, path) in &found {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let mut lines = text.lines();
        if ext == "csv" {
            let h = lines.next().unwrap_or_default().to_string();
            match &header {
                None => header = Some(h),
                Some(first) if *first != h => bail!(
                    "{}: its columns differ from shard 0's (mixed Mindscan versions?)",
                    path.display()
                ),
                Some(_) => {}
            }
        }
        for line in lines.filter(|l| !l.is_empty()) {
            let key = if ext == "csv" {
                csv_first_field(line)
            } else {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["path"].as_str().map(str::to_string))
            }
            .with_context(|| format!("{}: a row without a path: {line}", path.display()))?;
            if let Some((_, other)) = rows.insert(key.clone(), (line.to_string(), i)) {
                bail!(
                    "{}: image {key} is in the parts of shards {other} and {i}: two shards wrote the same file",
                    dir.display()
                );
            }
        }
    }
    let mut out = String::new();
    if let Some(h) = header {
        out.push_str(&h);
        out.push('\n');
    }
    for (row, _) in rows.values() {
        out.push_str(row);
        out.push('\n');
    }
    let path = dir.join(format!("{stem}.{ext}"));
    mindscan_sdk::fsio::write_atomic(&path, out.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(Some(Merged {
        path,
        parts: count,
        rows: rows.len(),
    }))
}

/// The first field of a CSV line (RFC 4180 quoting).
fn csv_first_field(line: &str) -> Option<String> {
    let Some(rest) = line.strip_prefix('"') else {
        return Some(line.split(',').next()?.to_string());
    };
    let mut field = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => return Some(field),
            c => field.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_join_sorted_and_gaps_and_duplicates_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let part = |i: u32, body: &str| {
            std::fs::write(
                d.join(format!("manifest.shard-{i}-of-3.csv")),
                format!("path,source\n{body}"),
            )
            .unwrap()
        };
        part(0, "b.jpg,x\n");
        part(2, "\"a,1.jpg\",y\n");
        let err = merge(d).unwrap_err().to_string();
        assert!(err.contains("shard(s) 1 are missing"), "{err}");
        part(1, "c.jpg,z\n");
        let m = merge(d).unwrap();
        assert_eq!((m.len(), m[0].rows, m[0].parts), (1, 3, 3));
        assert_eq!(
            std::fs::read_to_string(d.join("manifest.csv")).unwrap(),
            "path,source\n\"a,1.jpg\",y\nb.jpg,x\nc.jpg,z\n"
        );
        part(1, "b.jpg,z\n");
        let err = merge(d).unwrap_err().to_string();
        assert!(
            err.contains("image b.jpg is in the parts of shards 0 and 1"),
            "{err}"
        );
    }
}
