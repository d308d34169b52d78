//! Expanding a source's `paths:` parameter: files, folders (recursive) and glob patterns.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .map(|n| n.to_string_lossy().starts_with('.'))
        .unwrap_or(false)
}

fn walk(dir: &Path, accept: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list folder", dir.display()))?;
    for entry in rd {
        let p = entry?.path();
        if is_hidden(&p) {
            continue;
        }
        if p.is_dir() {
            walk(&p, accept, out)?;
        } else if accept(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Expands paths into a sorted, de-duplicated file list. Files named explicitly are always kept;
/// files found in folders or by globs are kept when `accept` says so. Hidden files and folders
/// are skipped. A path that does not exist, or a glob that matches nothing, is an error.
pub fn expand_inputs(paths: &[String], accept: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let path = Path::new(p);
        if path.is_file() {
            out.push(path.to_path_buf());
        } else if path.is_dir() {
            walk(path, &accept, &mut out)?;
        } else if p.contains(['*', '?', '[']) {
            let before = out.len();
            for m in glob::glob(p).with_context(|| format!("{p}: bad glob pattern"))? {
                let m = m?;
                if m.is_dir() {
                    walk(&m, &accept, &mut out)?;
                } else if accept(&m) && !is_hidden(&m) {
                    out.push(m);
                }
            }
            if out.len() == before {
                bail!("{p}: the pattern matches no file");
            }
        } else {
            bail!("{p}: no such file or folder");
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
