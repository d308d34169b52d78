//! Where a sink's files go: a local folder, or an `s3://` prefix reached through a local
//! staging folder.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::remote::{Remote, is_url};

/// A sink's output location. The sink writes under [`Destination::root`] exactly as it writes
/// to a local folder (temporary names, renames), then calls [`Destination::commit`] for each
/// file it finished: locally nothing more happens; for an object store the file is uploaded
/// whole and its staged copy removed, so staging holds only what is still being written.
pub struct Destination {
    root: PathBuf,
    remote: Option<Staged>,
}

struct Staged {
    remote: Remote,
    /// Removed with everything left in it when the sink is dropped.
    _staging: tempfile::TempDir,
}

impl Destination {
    /// `out` is a folder path or an `s3://bucket/prefix` URL. Staging for a URL goes under
    /// `$MINDSCAN_STAGING` (default: the system's temporary folder).
    pub fn new(out: &str) -> Result<Destination> {
        if !is_url(out) {
            return Ok(Destination {
                root: PathBuf::from(out),
                remote: None,
            });
        }
        let remote = Remote::parse(out)?;
        let base = std::env::var_os("MINDSCAN_STAGING")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&base)
            .with_context(|| format!("{}: cannot create the staging folder", base.display()))?;
        let staging = tempfile::Builder::new()
            .prefix("mindscan-staging-")
            .tempdir_in(&base)
            .with_context(|| format!("{}: cannot create a staging folder", base.display()))?;
        Ok(Destination {
            root: staging.path().to_path_buf(),
            remote: Some(Staged {
                remote,
                _staging: staging,
            }),
        })
    }

    /// The folder the sink writes under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// What to call a file at `path` (under [`Self::root`]) in messages and manifests: its
    /// object URL for a remote destination, else the path itself.
    pub fn shown(&self, path: &Path) -> String {
        match (&self.remote, path.strip_prefix(&self.root)) {
            (Some(s), Ok(rel)) => s.remote.url_of(&s.remote.key_for(&rel_key(rel))),
            _ => path.display().to_string(),
        }
    }

    /// Publishes a finished file written at `path` under [`Self::root`]. For an object store
    /// it becomes the object `prefix/<path relative to root>` (replacing an older one), whole
    /// or not at all, and the staged file is removed whether or not the upload succeeded (the
    /// error says which object is missing).
    pub fn commit(&self, path: &Path) -> Result<()> {
        let Some(staged) = &self.remote else {
            return Ok(());
        };
        let rel = path.strip_prefix(&self.root).with_context(|| {
            format!(
                "{}: not under the staging folder {}",
                path.display(),
                self.root.display()
            )
        })?;
        let key = staged.remote.key_for(&rel_key(rel));
        let sent = staged.remote.upload_file(&key, path);
        let _ = std::fs::remove_file(path);
        sent
    }
}

/// A relative path as an object key: `/`-separated whatever the platform.
fn rel_key(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_destination_is_the_folder_itself() {
        let d = Destination::new("out/images").unwrap();
        assert!(!d.is_remote());
        assert_eq!(d.root(), Path::new("out/images"));
        assert_eq!(d.shown(Path::new("out/images/a.jpg")), "out/images/a.jpg");
        // Nothing to publish locally, even for a file that does not exist.
        d.commit(Path::new("out/images/missing.jpg")).unwrap();
    }

    #[test]
    fn a_remote_destination_stages_locally_and_names_objects_by_url() {
        let d = Destination::new("s3://bucket/run-1/").unwrap();
        assert!(d.is_remote() && d.root().is_dir());
        let p = d.root().join("sub").join("x.nii.gz");
        assert_eq!(d.shown(&p), "s3://bucket/run-1/sub/x.nii.gz");
        let outside = d.commit(Path::new("/elsewhere/x")).err().unwrap();
        assert!(outside.to_string().contains("not under the staging folder"));
        let root = d.root().to_path_buf();
        drop(d);
        assert!(!root.exists(), "staging is removed with the destination");
    }
}
