//! Expanding a source's `paths:` parameter: files, folders (recursive) and glob patterns.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::walk::{Entry, Step, Walker};

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .map(|n| n.to_string_lossy().starts_with('.'))
        .unwrap_or(false)
}

/// Adds the accepted, non-hidden files below `dir` to `out` (each real folder once, so symlink
/// loops end; hidden folders are not entered).
fn walk(
    walker: &mut Walker,
    dir: &Path,
    accept: &dyn Fn(&Path) -> bool,
    out: &mut Vec<PathBuf>,
) -> Result<()> {
    let mut failed = None;
    walker.walk(dir, &mut |e| match e {
        Entry::Dir(p) if p != dir && is_hidden(p) => Step::Skip,
        Entry::Dir(_) => Step::Continue,
        Entry::File(p) => {
            if !is_hidden(p) && accept(p) {
                out.push(p.to_path_buf());
            }
            Step::Continue
        }
        Entry::Error(p, e) => {
            failed =
                Some(anyhow::Error::new(e).context(format!("{}: cannot list folder", p.display())));
            Step::Stop
        }
    });
    failed.map_or(Ok(()), Err)
}

/// A pattern with `**`: the glob crate's own recursion follows symlinked folders without end
/// (`self -> .` gives `self/self/self/...`), so the folder above the first wildcard is walked
/// with the loop-safe [`Walker`] instead, and each file is kept when it, or a folder above it,
/// matches the pattern.
fn recursive_glob(
    walker: &mut Walker,
    p: &str,
    accept: &dyn Fn(&Path) -> bool,
    out: &mut Vec<PathBuf>,
) -> Result<()> {
    let pattern = glob::Pattern::new(p).with_context(|| format!("{p}: bad glob pattern"))?;
    let mut base = PathBuf::new();
    for c in Path::new(p).components() {
        if c.as_os_str().to_string_lossy().contains(['*', '?', '[']) {
            break;
        }
        base.push(c);
    }
    if base.as_os_str().is_empty() {
        base.push(".");
    }
    if !base.is_dir() {
        return Ok(());
    }
    let mut found = Vec::new();
    walk(walker, &base, &|_| true, &mut found)?;
    let strip_dot = |q: &Path| {
        q.strip_prefix(".")
            .map(Path::to_path_buf)
            .unwrap_or(q.to_path_buf())
    };
    let matches = |q: &Path| pattern.matches_path(q) || pattern.matches_path(&strip_dot(q));
    out.extend(found.into_iter().filter(|f| {
        let above = || {
            f.ancestors()
                .skip(1)
                .take_while(|a| *a != base)
                .any(matches)
        };
        accept(f) && (matches(f) || above())
    }));
    Ok(())
}

/// Expands paths into a sorted, de-duplicated file list. Files named explicitly are always kept;
/// files found in folders or by globs are kept when `accept` says so. Hidden files and folders
/// are skipped. Symlinked folders are followed, each real folder once (a loop such as
/// `up -> ..` ends), under a `**` pattern too. A path that does not exist, or a glob that matches
/// nothing, is an error.
pub fn expand_inputs(paths: &[String], accept: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut walker = Walker::new();
    for p in paths {
        let path = Path::new(p);
        if path.is_file() {
            out.push(path.to_path_buf());
        } else if path.is_dir() {
            walk(&mut walker, path, &accept, &mut out)?;
        } else if p.contains("**") {
            let before = out.len();
            recursive_glob(&mut walker, p, &accept, &mut out)?;
            if out.len() == before {
                bail!("{p}: the pattern matches no file");
            }
        } else if p.contains(['*', '?', '[']) {
            let before = out.len();
            for m in glob::glob(p).with_context(|| format!("{p}: bad glob pattern"))? {
                let m = m?;
                if m.is_dir() {
                    walk(&mut walker, &m, &accept, &mut out)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_folder_with_symlink_loops_is_expanded_and_its_file_listed_once() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("scans");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("t1.nii"), b"x").unwrap();
        std::os::unix::fs::symlink("..", root.join("up")).unwrap();
        std::os::unix::fs::symlink(".", root.join("self")).unwrap();
        let files = expand_inputs(&[root.display().to_string()], |_| true).unwrap();
        let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(names, ["t1.nii"], "{files:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_recursive_glob_over_symlink_loops_ends_and_lists_each_file_once() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("scans");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("t1.nii"), b"x").unwrap();
        std::fs::write(root.join("sub/t2.nii"), b"x").unwrap();
        std::fs::write(root.join("sub/notes.txt"), b"x").unwrap();
        std::os::unix::fs::symlink("..", root.join("up")).unwrap();
        std::os::unix::fs::symlink(".", root.join("self")).unwrap();
        let pattern = format!("{}/**/*.nii", root.display());
        let files = expand_inputs(&[pattern], |_| true).unwrap();
        let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(names, ["t2.nii", "t1.nii"], "{files:?}"); // sorted: sub/ first
        let e = expand_inputs(&[format!("{}/**/*.dcm", root.display())], |_| true).unwrap_err();
        assert!(e.to_string().contains("matches no file"), "{e}");
    }

    #[test]
    fn hidden_entries_are_skipped_and_a_missing_path_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join(".cache")).unwrap();
        std::fs::write(tmp.path().join(".cache/a.nii"), b"x").unwrap();
        std::fs::write(tmp.path().join(".b.nii"), b"x").unwrap();
        std::fs::write(tmp.path().join("c.nii"), b"x").unwrap();
        let files = expand_inputs(&[tmp.path().display().to_string()], |_| true).unwrap();
        assert_eq!(files, [tmp.path().join("c.nii")]);
        let e = expand_inputs(&["/no/such/dir".into()], |_| true).unwrap_err();
        assert!(e.to_string().contains("/no/such/dir"), "{e}");
    }
}
