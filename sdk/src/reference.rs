//! References: what a source discovered, named but not decoded. A `reference` item carries no
//! tensor, only its [`Reference`] under the metadata key `reference` (plus the usual `key`,
//! `source`, `stem`...), so it is small, serialisable and can cross machines (a work queue)
//! to be decoded where the same storage is visible (`volume.load`).
//!
//! References carry file paths: they are work orders between stages, never outputs. A path may
//! name a patient (some exporters do), so sinks write decoded items, whose names are
//! de-identified, not references.

use serde::{Deserialize, Serialize};

use crate::item::{Item, Meta, keys, kinds};

/// Metadata key of the [`Reference`] in a `reference` item.
pub const META_KEY: &str = "reference";

/// What a decoder needs to turn a reference into a `volume`, on any machine that sees the
/// same paths.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reference {
    /// One DICOM series (one split of a SeriesInstanceUID, as the scan grouped it).
    Series {
        /// The de-identified series id (`2.25.…`, `.n` for a split).
        id: String,
        /// The split's grouping key (orientation, matrix, echo...): picks this split again when
        /// the files hold several.
        split: String,
        /// Hashed StudyInstanceUID (what shards group by).
        study: String,
        /// Every file holding a frame of the series, in scan order.
        files: Vec<String>,
        /// Shape the scan found, `[ni, nj, nk, nt]`: a decoder refuses files that no longer
        /// give it (changed since discovery).
        dims: [usize; 4],
        /// What the scan noticed about the series as a whole (a split UID, duplicate files):
        /// decoding sees only these files, so it cannot notice it again.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<String>,
    },
    /// One NIfTI file.
    File { path: String },
}

impl Reference {
    /// The `reference` item: `key`, `source` and `stem` set, no tensor.
    pub fn into_item(self, key: &str, source: &str, stem: &str) -> Item {
        let mut item = Item::new(kinds::REFERENCE, key);
        item.meta.set(keys::SOURCE, source);
        item.meta.set("stem", stem);
        item.meta.set(META_KEY, &self);
        item
    }

    /// The reference an item carries, or why it carries none.
    pub fn of(item: &Item) -> anyhow::Result<Reference> {
        Reference::from_meta(&item.meta)
    }

    /// The reference in item metadata.
    pub fn from_meta(meta: &Meta) -> anyhow::Result<Reference> {
        let v = meta
            .0
            .get(META_KEY)
            .ok_or_else(|| anyhow::anyhow!("the item carries no `{META_KEY}` metadata"))?;
        serde_json::from_value(v.clone())
            .map_err(|e| anyhow::anyhow!("`{META_KEY}` metadata is not a reference: {e}"))
    }

    /// Short description for messages: the series id or the file path.
    pub fn describe(&self) -> String {
        match self {
            Reference::Series { id, files, .. } => {
                format!("series {id} ({} file(s))", files.len())
            }
            Reference::File { path } => path.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_round_trips_through_json() {
        let r = Reference::Series {
            id: "2.25.1".into(),
            split: "echo1".into(),
            study: "2.25.9".into(),
            files: vec!["/a/1.dcm".into(), "/a/2.dcm".into()],
            dims: [64, 64, 2, 1],
            warnings: vec!["split".into()],
        };
        let item = r.clone().into_item("2.25.1", "/a", "epi_3");
        assert_eq!(item.kind, kinds::REFERENCE);
        let json = serde_json::to_string(&item.meta.0).unwrap();
        let meta = Meta(serde_json::from_str(&json).unwrap());
        assert_eq!(Reference::from_meta(&meta).unwrap(), r);
        assert!(json.contains(r#""kind":"series""#), "{json}");
    }

    #[test]
    fn foreign_metadata_is_refused_with_the_reason() {
        let mut meta = Meta::default();
        assert!(
            Reference::from_meta(&meta)
                .unwrap_err()
                .to_string()
                .contains("no `reference`")
        );
        meta.set(META_KEY, serde_json::json!({"kind": "tape", "path": "x"}));
        let e = Reference::from_meta(&meta).unwrap_err().to_string();
        assert!(e.contains("not a reference") && e.contains("tape"), "{e}");
    }
}
