//! Inputs in an object store, mirrored into a local cache so the format code reads local files.
//!
//! `s3://bucket/key` lives at `<cache>/s3/bucket/key`, where `<cache>` is `$MINDSCAN_CACHE`,
//! else `$XDG_CACHE_HOME/mindscan`, else `~/.cache/mindscan`. The place is the same on every
//! machine that sets the same cache, and [`origin_of`] turns it back into the URL, so keys,
//! seeds, manifests and references name the object, never the cache. An object already there
//! with the same size and modification time is not fetched again.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};

use crate::remote::{Object, Remote, is_url};

/// The cache folder (see the module documentation).
pub fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("MINDSCAN_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("mindscan");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("mindscan"),
        None => std::env::temp_dir().join("mindscan-cache"),
    }
}

/// Where the object `key` of `bucket` is mirrored. A key that would leave the cache (`..`,
/// `.` or empty segments, as a hostile listing could hold) is refused.
fn mirror_path(bucket: &str, key: &str) -> Result<PathBuf> {
    let mut p = cache_root().join("s3").join(bucket);
    for seg in key.split('/') {
        let ok = matches!(
            Path::new(seg).components().next(),
            Some(Component::Normal(_))
        ) && Path::new(seg).components().count() == 1;
        if !ok || seg.is_empty() {
            bail!("s3://{bucket}/{key}: the key has an empty, '.' or '..' segment; refused");
        }
        p.push(seg);
    }
    Ok(p)
}

/// The URL of a file in the mirror (`None` for any other path).
pub fn origin_of(local: &Path) -> Option<String> {
    let rel = local.strip_prefix(cache_root().join("s3")).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    (!parts.is_empty()).then(|| format!("s3://{}", parts.join("/")))
}

/// Brings one listed object into the mirror (unless it is there already) and returns its path.
fn mirror(remote: &Remote, object: &Object) -> Result<PathBuf> {
    let local = mirror_path(remote.bucket(), &object.key)?;
    let modified = UNIX_EPOCH + Duration::from_secs(object.modified.max(0) as u64);
    if let Ok(meta) = std::fs::metadata(&local)
        && meta.len() == object.size
        && meta.modified().ok() == Some(modified)
    {
        return Ok(local);
    }
    let dir = local.parent().expect("a mirror path has a parent");
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create the cache folder", dir.display()))?;
    // Downloaded beside its place, then renamed: a reader (or a second process mirroring the
    // same object) never sees a partial file.
    let tmp = tempfile::Builder::new()
        .prefix(".mirror-")
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot create a file in the cache", dir.display()))?
        .into_temp_path();
    remote.download(&object.key, &tmp)?;
    let got = std::fs::metadata(&tmp)?.len();
    if got != object.size {
        bail!(
            "{}: downloaded {got} bytes where the listing said {}",
            remote.url_of(&object.key),
            object.size
        );
    }
    std::fs::File::options()
        .write(true)
        .open(&tmp)
        .and_then(|f| f.set_modified(modified))
        .with_context(|| format!("{}: cannot set its time", tmp.display()))?;
    tmp.persist(&local)
        .with_context(|| format!("{}: cannot move into the cache", local.display()))?;
    Ok(local)
}

fn is_hidden(key: &str) -> bool {
    key.rsplit('/').next().is_some_and(|n| n.starts_with('.'))
}

/// A source's `paths:` with every `s3://` entry replaced by its place in the mirror: the folder
/// for a prefix, the file for one object. The mirror is brought up to date first: the objects
/// `accept` takes (by key; hidden names skipped) are fetched when new or changed, and files
/// whose object is gone are removed, so the folder holds what the bucket holds. Local entries
/// are kept as they are.
pub fn localise_inputs(paths: &[String], accept: &dyn Fn(&Path) -> bool) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        if !is_url(p) {
            out.push(p.clone());
            continue;
        }
        let remote = Remote::parse(p)?;
        let listed = remote.list()?;
        let single = matches!(listed.as_slice(), [o] if o.key == remote.prefix());
        let mut kept = HashSet::new();
        for object in &listed {
            if is_hidden(&object.key) || !accept(Path::new(&object.key)) {
                continue;
            }
            kept.insert(mirror(&remote, object)?);
        }
        let place = if remote.prefix().is_empty() {
            cache_root().join("s3").join(remote.bucket())
        } else {
            mirror_path(remote.bucket(), remote.prefix())?
        };
        if !single {
            let listed: HashSet<PathBuf> = listed
                .iter()
                .filter_map(|o| mirror_path(remote.bucket(), &o.key).ok())
                .collect();
            prune(&place, &listed);
            std::fs::create_dir_all(&place)
                .with_context(|| format!("{}: cannot create the cache folder", place.display()))?;
        }
        out.push(place.to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Removes the files below `dir` that are not `listed` (objects deleted since an earlier
/// run). Symlinks and hidden names (downloads in progress) are left alone.
fn prune(dir: &Path, listed: &HashSet<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => prune(&path, listed),
            Ok(t) if t.is_file() && !listed.contains(&path) => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
}

/// A local path for `path_or_url`: the path itself, or the mirrored object (fetched when the
/// mirror lacks it or holds another version). Used where a reference made on another machine
/// names an object.
pub fn fetch(path_or_url: &str) -> Result<PathBuf> {
    if !is_url(path_or_url) {
        return Ok(PathBuf::from(path_or_url));
    }
    let remote = Remote::parse(path_or_url)?;
    let object = remote
        .list()?
        .into_iter()
        .find(|o| o.key == remote.prefix())
        .with_context(|| format!("{path_or_url}: no such object"))?;
    mirror(&remote, &object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_paths_stay_in_the_cache_and_map_back_to_urls() {
        let p = mirror_path("scans", "site/a.nii.gz").unwrap();
        assert!(p.starts_with(cache_root().join("s3")));
        assert_eq!(origin_of(&p).as_deref(), Some("s3://scans/site/a.nii.gz"));
        for hostile in ["../x", "a/../../x", "a//b", "./a", "a/."] {
            let e = mirror_path("scans", hostile).err().unwrap().to_string();
            assert!(e.contains("refused"), "{hostile}: {e}");
        }
        assert_eq!(origin_of(Path::new("/data/a.nii")), None);
        assert!(is_hidden("a/.x") && !is_hidden(".a/x"));
    }

    #[test]
    fn local_inputs_pass_through() {
        let paths = vec!["/data/a.nii".to_string(), "b/*.dcm".to_string()];
        assert_eq!(localise_inputs(&paths, &|_| true).unwrap(), paths);
        assert_eq!(fetch("/data/a.nii").unwrap(), PathBuf::from("/data/a.nii"));
    }
}
