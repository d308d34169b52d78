//! Walking folder trees that may contain symlink loops.
//!
//! A folder reached through a symlink is entered like a real one, but every real folder is
//! entered at most once per [`Walker`]: folders are keyed by the (device, inode) of what the
//! path resolves to (the canonical path where there are no inodes). So `up -> ..` and
//! `self -> .` end the walk instead of recursing forever, and a folder linked twice gives its
//! files once.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

/// What the walker shows its visitor.
#[derive(Debug)]
pub enum Entry<'a> {
    /// A folder (real or through a symlink) not entered before by this walker: `Step::Continue`
    /// enters it. The start folder is shown too.
    Dir(&'a Path),
    /// Anything else: a file, a symlink to one, a dangling symlink, a device...
    File(&'a Path),
    /// A folder that could not be listed (or whose identity could not be read).
    Error(&'a Path, io::Error),
}

/// The visitor's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Go on (and enter the folder, for `Entry::Dir`).
    Continue,
    /// Do not enter this folder (the same as `Continue` for the other entries).
    Skip,
    /// End the whole walk now.
    Stop,
}

/// Identity of a real folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DirId {
    #[cfg(unix)]
    Inode(u64, u64),
    #[cfg(not(unix))]
    Canonical(PathBuf),
}

fn dir_id(path: &Path) -> io::Result<DirId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(path)?;
        Ok(DirId::Inode(md.dev(), md.ino()))
    }
    #[cfg(not(unix))]
    {
        Ok(DirId::Canonical(path.canonicalize()?))
    }
}

/// Depth-first walks that enter each real folder once; see the module docs.
#[derive(Debug, Default)]
pub struct Walker {
    entered: HashSet<DirId>,
}

impl Walker {
    pub fn new() -> Walker {
        Walker::default()
    }

    /// Walks `dir`, showing `visit` the folder itself, then every entry below it, depth-first,
    /// the entries of each folder in name order. Returns `false` when `visit` stopped the walk.
    /// A folder already entered by this walker (in this or an earlier call) is not shown again.
    pub fn walk(&mut self, dir: &Path, visit: &mut dyn FnMut(Entry<'_>) -> Step) -> bool {
        match dir_id(dir) {
            Ok(id) if self.entered.contains(&id) => true,
            Ok(id) => match visit(Entry::Dir(dir)) {
                Step::Continue => {
                    self.entered.insert(id);
                    self.list(dir, visit)
                }
                Step::Skip => true,
                Step::Stop => false,
            },
            Err(e) => visit(Entry::Error(dir, e)) != Step::Stop,
        }
    }

    fn list(&mut self, dir: &Path, visit: &mut dyn FnMut(Entry<'_>) -> Step) -> bool {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => return visit(Entry::Error(dir, e)) != Step::Stop,
        };
        let mut entries: Vec<(PathBuf, bool)> = Vec::new();
        for e in rd {
            match e {
                Ok(e) => {
                    let p = e.path();
                    // Symlinks are followed to learn whether they lead to a folder.
                    let is_dir = match e.file_type() {
                        Ok(t) if t.is_symlink() => p.is_dir(),
                        Ok(t) => t.is_dir(),
                        Err(_) => p.is_dir(),
                    };
                    entries.push((p, is_dir));
                }
                Err(e) => {
                    if visit(Entry::Error(dir, e)) == Step::Stop {
                        return false;
                    }
                }
            }
        }
        entries.sort();
        for (p, is_dir) in entries {
            let go_on = if is_dir {
                self.walk(&p, visit)
            } else {
                visit(Entry::File(&p)) != Step::Stop
            };
            if !go_on {
                return false;
            }
        }
        true
    }
}

/// Every file below `dir` (each real folder entered once), skipping the entries for which
/// `skip` is true (folders are then not entered), with the folders that could not be listed.
pub fn files_under(
    dir: &Path,
    skip: impl Fn(&Path) -> bool,
) -> (Vec<PathBuf>, Vec<(PathBuf, io::Error)>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    Walker::new().walk(dir, &mut |e| match e {
        Entry::Dir(p) if p != dir && skip(p) => Step::Skip,
        Entry::Dir(_) => Step::Continue,
        Entry::File(p) => {
            if !skip(p) {
                files.push(p.to_path_buf());
            }
            Step::Continue
        }
        Entry::Error(p, e) => {
            errors.push((p.to_path_buf(), e));
            Step::Continue
        }
    });
    (files, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `root/{data/a.txt, up -> .., self -> ., again -> data}` inside a parent holding only
    /// `root`.
    #[cfg(unix)]
    fn looped_tree() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("data/a.txt"), b"x").unwrap();
        std::os::unix::fs::symlink("..", root.join("up")).unwrap();
        std::os::unix::fs::symlink(".", root.join("self")).unwrap();
        std::os::unix::fs::symlink("data", root.join("again")).unwrap();
        (tmp, root)
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_end_the_walk_and_each_file_comes_once() {
        let (_tmp, root) = looped_tree();
        let (files, errors) = files_under(&root, |_| false);
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap()).collect();
        assert_eq!(names, ["a.txt"], "{files:?}");
        // `again` sorts before `data`: the folder comes once, through whichever path is first.
        assert_eq!(files[0], root.join("again/a.txt"));
    }

    #[cfg(unix)]
    #[test]
    fn a_walker_enters_a_folder_once_across_calls_and_skipped_folders_stay_closed() {
        let (_tmp, root) = looped_tree();
        let mut w = Walker::new();
        let mut dirs = Vec::new();
        let mut files = Vec::new();
        let mut visit = |e: Entry<'_>| match e {
            Entry::Dir(p) if p.ends_with("again") => Step::Skip,
            Entry::Dir(p) => {
                dirs.push(p.to_path_buf());
                Step::Continue
            }
            Entry::File(p) => {
                files.push(p.to_path_buf());
                Step::Continue
            }
            Entry::Error(p, e) => panic!("{}: {e}", p.display()),
        };
        assert!(w.walk(&root, &mut visit));
        assert!(w.walk(&root.join("data"), &mut visit));
        assert_eq!(files, [root.join("data/a.txt")]);
        // root, up (its parent: entered once, holding only root), data.
        assert_eq!(dirs, [root.clone(), root.join("data"), root.join("up")]);
    }

    #[test]
    fn stop_ends_the_walk_and_an_unlistable_folder_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        for n in ["a", "b", "c"] {
            std::fs::write(tmp.path().join(n), b"x").unwrap();
        }
        let mut seen = 0;
        let finished = Walker::new().walk(tmp.path(), &mut |e| match e {
            Entry::File(_) => {
                seen += 1;
                if seen == 2 {
                    Step::Stop
                } else {
                    Step::Continue
                }
            }
            _ => Step::Continue,
        });
        assert!(!finished);
        assert_eq!(seen, 2);
        let (files, errors) = files_under(&tmp.path().join("missing"), |_| false);
        assert!(files.is_empty());
        assert_eq!(errors.len(), 1);
    }
}
