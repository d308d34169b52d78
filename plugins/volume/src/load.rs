//! The `volume.load` transform: a `reference` item → the `volume` item its source would have
//! decoded itself (`dicom.read`, `nifti.read`), byte for byte, with the reference's own
//! metadata (`key`, `stem`, `version`, `replay`...) carried over, so names and seeds do not
//! depend on where the reference was decoded.

use mindscan_dicom::item::{deid_options, load_planned_with, resolve};
use mindscan_dicom::{LoadOptions, PhilipsScaling};
use mindscan_nifti::item::volume_item_named;
use mindscan_nifti::{NiftiErrorKind, ReadOptions, read_nifti_with};
use mindscan_sdk::prelude::*;
use mindscan_sdk::reference::{META_KEY, Reference};
use mindscan_storage::fetch;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadParams {
    /// DICOM: de-identified attributes to keep in the sidecar (as for `dicom.read`).
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// DICOM: zero-fill undecodable slices instead of failing the series (as for `dicom.read`).
    #[serde(default)]
    pub lenient: bool,
    /// DICOM: Philips private scaling, `float` or `display` (as for `dicom.read`).
    #[serde(default)]
    pub philips_scaling: Scaling,
    /// NIfTI: apply scl_slope/scl_inter (as for `nifti.read`).
    #[serde(default = "yes")]
    pub apply_scaling: bool,
    /// NIfTI: the most bytes of voxel data one file may claim (as for `nifti.read`). Default
    /// 2 GiB.
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 1))]
    pub max_bytes: u64,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    #[default]
    Float,
    Display,
}

fn yes() -> bool {
    true
}

fn default_max_bytes() -> u64 {
    2 << 30
}

/// Decodes references into volumes.
pub struct VolumeLoad {
    dicom: LoadOptions,
    lenient: bool,
    nifti: ReadOptions,
    apply_scaling: bool,
}

impl VolumeLoad {
    fn decode(&self, ctx: &Context, item: &Item) -> Result<Item> {
        let reference = Reference::of(item)?;
        let stem: String = item.meta.get("stem").unwrap_or_default();
        let source: String = item.meta.get(keys::SOURCE).unwrap_or_default();
        match &reference {
            Reference::Series { .. } => {
                // Objects named by URL are fetched into the local mirror first.
                let mut local = reference.clone();
                if let Reference::Series { files, .. } = &mut local {
                    for f in files.iter_mut() {
                        *f = fetch(f)?.display().to_string();
                    }
                }
                let planned = resolve(&local, &stem, &source)?;
                load_planned_with(&planned, &self.dicom, self.lenient, &|w| ctx.warn(w))
            }
            Reference::File { path: name } => {
                let local = fetch(name)?;
                let path = local.as_path();
                let vol = read_nifti_with(path, &self.nifti).map_err(|e| {
                    if matches!(e.kind, NiftiErrorKind::OverBudget { .. }) {
                        anyhow!(
                            "{e} (volume.load parameter `max_bytes`: e.g. --set {}.max_bytes=8589934592)",
                            ctx.stage_id()
                        )
                    } else {
                        e.into()
                    }
                })?;
                volume_item_named(path, name, vol, self.apply_scaling)
            }
        }
    }
}

impl Stage for VolumeLoad {
    type Params = LoadParams;
    const NAME: &'static str = "volume.load";
    const ROLE: Role = Role::Transform;
    const INPUTS: &'static [&'static str] = &[kinds::REFERENCE];
    const OUTPUTS: &'static [&'static str] = &[kinds::VOLUME];
    const DESCRIPTION: &'static str = "Decode references (a DICOM series, a NIfTI file) into \
         volumes, as dicom.read / nifti.read would, here or on another machine";

    fn new(p: LoadParams, _host: &Host) -> Result<Self> {
        if p.max_bytes == 0 {
            bail!("max_bytes must be at least 1");
        }
        Ok(VolumeLoad {
            dicom: LoadOptions {
                deid: deid_options(&p.keep_tags)?,
                philips_scaling: match p.philips_scaling {
                    Scaling::Float => PhilipsScaling::Float,
                    Scaling::Display => PhilipsScaling::Display,
                },
            },
            lenient: p.lenient,
            nifti: ReadOptions {
                max_bytes: Some(p.max_bytes),
            },
            apply_scaling: p.apply_scaling,
        })
    }

    fn process(&self, ctx: &Context, item: Item, out: &mut Emitter) -> Result<()> {
        let mut volume = self.decode(ctx, &item)?;
        // The reference's own metadata wins (key, stem, version, replay...), except what the
        // decoder measured; the reference itself stays behind.
        for (k, v) in item.meta.0 {
            if k != META_KEY && (k == keys::KEY || !volume.meta.0.contains_key(&k)) {
                volume.meta.0.insert(k, v);
            }
        }
        out.emit(volume)
    }
}
