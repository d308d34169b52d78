//! The dependency walls of docs/ARCHITECTURE.md, checked on `cargo metadata`: the SDK depends on
//! no crate of ours; a library on the SDK and other libraries; a plugin on the SDK and
//! libraries, never on another plugin or the engine (its `dylib/` wrapper on its own plugin
//! only); and the engine names first-party plugins in one file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Our crates by name: (folder relative to the workspace root, names of our crates it depends
/// on, development dependencies excepted).
fn our_crates() -> BTreeMap<String, (PathBuf, Vec<String>)> {
    let root = workspace_root();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours: Vec<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    packages
        .iter()
        .map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap());
            let folder = manifest
                .parent()
                .unwrap()
                .strip_prefix(&root)
                .unwrap()
                .to_path_buf();
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| ours.contains(&d.as_str()))
                .collect();
            (p["name"].as_str().unwrap().to_string(), (folder, deps))
        })
        .collect()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap()
}

#[test]
fn walls_sdk_libraries_plugins_and_engine() {
    let crates = our_crates();
    let folder_of = |name: &str| crates[name].0.clone();
    let under = |name: &str, top: &str| folder_of(name).starts_with(top);
    let mut broken = Vec::new();
    let mut plugins = 0;
    for (name, (folder, deps)) in &crates {
        for d in deps {
            let allowed = if folder.starts_with("sdk") {
                false
            } else if folder.starts_with("libraries") {
                d == "mindscan-sdk" || under(d, "libraries")
            } else if folder.starts_with("plugins") && folder.ends_with("dylib") {
                d == "mindscan-sdk" || folder.parent() == Some(folder_of(d).as_path())
            } else if folder.starts_with("plugins") {
                d == "mindscan-sdk" || under(d, "libraries")
            } else {
                // The engine and the test crates may use any crate.
                true
            };
            if !allowed {
                broken.push(format!("{name} ({}) depends on {d}", folder.display()));
            }
        }
        if folder.starts_with("plugins") && !folder.ends_with("dylib") {
            plugins += 1;
        }
    }
    assert!(plugins >= 7, "plugins found: {plugins}");
    assert!(
        crates.values().any(|(f, _)| f.starts_with("libraries")),
        "no library crates found"
    );
    assert!(broken.is_empty(), "walls broken:\n{}", broken.join("\n"));

    // The engine names first-party plugin crates in one place.
    let mut naming = Vec::new();
    let src = workspace_root().join("engine/src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read_to_string(&p)
                .unwrap()
                .contains("mindscan_plugin_")
            {
                naming.push(p.strip_prefix(&src).unwrap().display().to_string());
            }
        }
    }
    assert_eq!(naming, ["builtin.rs"], "engine files naming plugin crates");
}
