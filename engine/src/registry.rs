//! Finds plugins (linked first-party ones and `cdylib`s), checks their ABI and lists their stages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use mindscan_sdk::abi::{
    ABI_VERSION, ENTRY_SYMBOL, EntryFn, PluginDescriptor, Role, StageDescriptor,
};

/// Where a plugin came from.
#[derive(Clone, Debug)]
pub enum Origin {
    Linked,
    Library(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Linked => f.write_str("built in"),
            Origin::Library(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A loaded plugin. Dropping the last `Arc` unloads the library, so every stage instance and
/// every item that came from it holds one.
pub struct Plugin {
    pub name: String,
    pub version: String,
    pub origin: Origin,
    descriptor: *const PluginDescriptor,
    _library: Option<libloading::Library>,
}

// SAFETY: the descriptor is immutable static data of the library, which we keep loaded.
unsafe impl Send for Plugin {}
unsafe impl Sync for Plugin {}

impl Plugin {
    fn stages(&self) -> &[StageDescriptor] {
        // SAFETY: checked non-null and ABI-compatible at load time; lives as long as `self`.
        let d = unsafe { &*self.descriptor };
        if d.n_stages == 0 || d.stages.is_null() {
            return &[];
        }
        unsafe { std::slice::from_raw_parts(d.stages, d.n_stages) }
    }
}

/// One stage type with its metadata copied out of the descriptor.
#[derive(Clone)]
pub struct StageType {
    pub name: String,
    pub role: Role,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub schema: serde_json::Value,
    pub description: String,
    pub plugin: Arc<Plugin>,
    index: usize,
}

impl StageType {
    pub fn descriptor(&self) -> &StageDescriptor {
        &self.plugin.stages()[self.index]
    }
}

#[derive(Default)]
pub struct Registry {
    stages: BTreeMap<String, StageType>,
    loaded_paths: Vec<PathBuf>,
}

fn split_kinds(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(String::from)
        .collect()
}

impl Registry {
    /// A registry with the first-party plugins linked into this binary.
    pub fn with_builtin() -> Result<Registry> {
        let mut r = Registry::default();
        for d in crate::builtin::descriptors() {
            // SAFETY: first-party descriptors from our own SDK.
            unsafe { r.add(d, Origin::Linked, None) }?;
        }
        Ok(r)
    }

    /// # Safety
    /// `d` must point to a descriptor whose first field is the ABI version.
    unsafe fn add(
        &mut self,
        d: *const PluginDescriptor,
        origin: Origin,
        library: Option<libloading::Library>,
    ) -> Result<()> {
        if d.is_null() {
            bail!("{origin}: the entry symbol returned no descriptor");
        }
        // Read only the version before trusting the rest of the layout.
        // SAFETY: the first field of every ABI version is a u32 version.
        let version = unsafe { *(d as *const u32) };
        if version != ABI_VERSION {
            bail!(
                "{origin}: plugin built for Mindscan ABI version {version}, but this mindscan \
                 uses ABI version {ABI_VERSION}; rebuild the plugin against mindscan-sdk with \
                 ABI {ABI_VERSION}"
            );
        }
        // SAFETY: same ABI version, so the layout is ours.
        let desc = unsafe { &*d };
        let plugin = Arc::new(Plugin {
            name: unsafe { desc.name.as_str() }.to_string(),
            version: unsafe { desc.version.as_str() }.to_string(),
            origin: origin.clone(),
            descriptor: d,
            _library: library,
        });
        for (index, s) in plugin.stages().iter().enumerate() {
            // SAFETY: strings are static data of the plugin.
            let name = unsafe { s.name.as_str() }.to_string();
            let Some(role) = Role::from_u32(s.role) else {
                bail!("{origin}: stage {name} has an unknown role {}", s.role);
            };
            let schema_text = unsafe { s.params_schema.as_str() };
            let schema = serde_json::from_str(schema_text)
                .with_context(|| format!("{origin}: stage {name} has an invalid params schema"))?;
            if let Some(prev) = self.stages.get(&name) {
                bail!(
                    "stage {name} is provided twice: by plugin {} ({}) and by plugin {} ({origin})",
                    prev.plugin.name,
                    prev.plugin.origin,
                    plugin.name
                );
            }
            self.stages.insert(
                name.clone(),
                StageType {
                    name,
                    role,
                    inputs: split_kinds(unsafe { s.inputs.as_str() }),
                    outputs: split_kinds(unsafe { s.outputs.as_str() }),
                    schema,
                    description: unsafe { s.description.as_str() }.to_string(),
                    plugin: plugin.clone(),
                    index,
                },
            );
        }
        Ok(())
    }

    /// Loads one plugin library.
    pub fn load_library(&mut self, path: &Path) -> Result<()> {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if self.loaded_paths.contains(&canonical) {
            return Ok(());
        }
        if !path.exists() {
            bail!("{}: plugin library not found", path.display());
        }
        // SAFETY: loading a library runs its initialisers; plugins are trusted code by design.
        let lib = unsafe { libloading::Library::new(path) }
            .with_context(|| format!("{}: cannot load plugin library", path.display()))?;
        // SAFETY: the symbol type is fixed by the ABI.
        let entry: EntryFn = match unsafe { lib.get::<EntryFn>(ENTRY_SYMBOL.as_bytes()) } {
            Ok(sym) => *sym,
            Err(_) => bail!(
                "{}: no `{ENTRY_SYMBOL}` symbol, so this is not a Mindscan plugin (export one \
                 with mindscan_sdk::export_plugin!); this mindscan uses ABI version {ABI_VERSION}",
                path.display()
            ),
        };
        // SAFETY: calling the plugin's entry point, which returns static data.
        let d = unsafe { entry() };
        // SAFETY: see `add`.
        unsafe { self.add(d, Origin::Library(path.to_path_buf()), Some(lib)) }?;
        self.loaded_paths.push(canonical);
        Ok(())
    }

    /// Loads a library file, or every library in a folder.
    pub fn load_path(&mut self, path: &Path) -> Result<()> {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("{}: cannot list plugin folder", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_library(p))
                .collect();
            entries.sort();
            for p in entries {
                self.load_library(&p)?;
            }
            Ok(())
        } else {
            self.load_library(path)
        }
    }

    /// Loads the folders and files listed in `MINDSCAN_PLUGIN_PATH` (`:`-separated).
    pub fn load_env(&mut self) -> Result<()> {
        if let Some(v) = std::env::var_os("MINDSCAN_PLUGIN_PATH") {
            for p in std::env::split_paths(&v) {
                if !p.as_os_str().is_empty() {
                    self.load_path(&p)?;
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&StageType> {
        self.stages.get(name)
    }

    pub fn stages(&self) -> impl Iterator<Item = &StageType> {
        self.stages.values()
    }

    /// Known stage names closest to `name`, for "did you mean" hints.
    pub fn close_names(&self, name: &str) -> Vec<String> {
        let mut scored: Vec<(f64, &String)> = self
            .stages
            .keys()
            .map(|k| (strsim::jaro_winkler(name, k), k))
            .filter(|(s, _)| *s > 0.75)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        // Names sharing a plugin prefix all score high ("volume.slise" is close
        // to "volume.load" too): offer only those about as close as the best.
        let best = scored.first().map_or(0.0, |(s, _)| *s);
        scored
            .into_iter()
            .take_while(|(s, _)| *s >= best - 0.05)
            .take(3)
            .map(|(_, k)| k.clone())
            .collect()
    }
}

fn is_library(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("so") | Some("dylib") | Some("dll")
    )
}
