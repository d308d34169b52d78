//! The pipeline file: serde types that are also the schema (`mindscan schema` prints it).
//!
//! Values that errors must point at are wrapped in [`Loc`], which records the YAML line and
//! column. Unknown keys are rejected everywhere; booleans are strict (`yes`/`no` stay strings).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A value with the YAML position it came from (line 0 = not from the file, e.g. `--set`).
#[derive(Clone, Debug)]
pub struct Loc<T> {
    pub value: T,
    pub line: u32,
    pub column: u32,
}

impl<T> Loc<T> {
    pub fn synthetic(value: T) -> Self {
        Loc {
            value,
            line: 0,
            column: 0,
        }
    }
}

impl<T: PartialEq> PartialEq for Loc<T> {
    fn eq(&self, o: &Self) -> bool {
        self.value == o.value
    }
}
impl<T: Eq> Eq for Loc<T> {}
impl<T: Ord> PartialOrd for Loc<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T: Ord> Ord for Loc<T> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.value.cmp(&o.value)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Loc<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Loc {
            line: s.referenced.line() as u32,
            column: s.referenced.column() as u32,
            value: s.value,
        })
    }
}

impl<T: JsonSchema> JsonSchema for Loc<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(g)
    }
}

/// What a stage does when one item fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop the run; `mindscan run` exits non-zero.
    #[default]
    Fail,
    /// Log the error, count it, go on.
    Skip,
    /// Like `skip`, and also append a JSON record (provenance + error) to the dead-letter file.
    DeadLetter,
}

/// A Mindscan pipeline file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Name of the pipeline (used in logs, metrics and dead-letter records).
    pub pipeline: Loc<String>,
    /// Seed from which every item's seed is derived (with the stage id and the item key).
    #[serde(default)]
    pub seed: u64,
    /// Plugin libraries (files or folders), relative to this file.
    #[serde(default)]
    pub plugins: Vec<Loc<String>>,
    /// JSONL file for `on_error: dead_letter` records, relative to the working directory.
    #[serde(default)]
    pub dead_letter: Option<String>,
    /// Folder where stages keep durable state (the watch source's journal), relative to the
    /// working directory. Default: `.mindscan-state` inside the `out` folder of the first stage
    /// that has one, else `.mindscan-state` in the working directory.
    #[serde(default)]
    pub state_dir: Option<String>,
    /// Stages in any order; edges come from each stage's `inputs`.
    pub stages: Vec<StageConfig>,
}

/// One stage of the pipeline.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Unique id of this stage in the pipeline (used by `inputs` and `--set ID.param=value`).
    pub id: Loc<String>,
    /// Stage type, e.g. `nifti.read` (see `mindscan plugins`).
    #[serde(rename = "use")]
    pub uses: Loc<String>,
    /// Ids of the stages whose items this stage takes (several = fan-in).
    #[serde(default)]
    pub inputs: Vec<Loc<String>>,
    /// Stage parameters, checked against the stage's JSON Schema before the run.
    #[serde(default)]
    pub params: BTreeMap<Loc<String>, Loc<Value>>,
    /// Worker threads for this stage (1 to 1024).
    #[serde(default = "default_workers")]
    pub workers: Loc<u32>,
    /// Capacity of the bounded queue in front of this stage (items). Default: 128 for stages
    /// that take only 2D images (a slice is a small fraction of a volume, and a deep queue of
    /// them lets the reader decode the next volume while they are written), 16 otherwise. At most
    /// 65536.
    #[serde(default)]
    pub queue: Option<Loc<u32>>,
    /// Sources only: how many of this source's items may hold memory at once. An item holds its
    /// slot until the data it carries has been released by every stage downstream (a volume cut
    /// into slices is released once cut), or, for items without data, until every item derived
    /// from it has been handled. This, with the queues, bounds memory, not the dataset size.
    /// Default: `workers` (one volume per reader worker). At most 65536.
    #[serde(default)]
    pub max_in_flight: Option<Loc<u32>>,
    /// What to do when one item fails.
    #[serde(default)]
    pub on_error: OnError,
    /// Stages with inputs: the longest one item may take (`500ms`, `60s`, `5m`, `1h`, or a
    /// number of seconds; more than 0, at most 24h). When it is up the plugin sees
    /// cancellation (`is_cancelled`, and `emit` refuses), and the item becomes an error handled
    /// by `on_error`. A plugin that never checks cannot be preempted: its item is reported as
    /// timed out when the call returns. Default: no limit.
    #[serde(default)]
    pub timeout: Option<Loc<DurationValue>>,
}

/// A duration as written in a pipeline file: `500ms`, `60s`, `5m`, `1h`, or a number of seconds.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DurationValue {
    Seconds(f64),
    Text(String),
}

/// Longest `timeout`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

impl DurationValue {
    /// The duration, if it is one: more than 0 and at most [`MAX_TIMEOUT`].
    pub fn to_duration(&self) -> Result<Duration, String> {
        let secs = match self {
            DurationValue::Seconds(v) => *v,
            DurationValue::Text(t) => mindscan_sdk::duration::parse(t)?.as_secs_f64(),
        };
        if !secs.is_finite() || secs <= 0.0 {
            return Err(format!("{} is not a duration above 0", self.text()));
        }
        if secs > MAX_TIMEOUT.as_secs_f64() {
            return Err(format!("{} is above the maximum of 24h", self.text()));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    fn text(&self) -> String {
        match self {
            DurationValue::Seconds(v) => format!("{v}"),
            DurationValue::Text(t) => format!("'{t}'"),
        }
    }
}

/// Largest `workers` a stage may ask for (threads are started before the first item flows).
pub const MAX_WORKERS: u32 = 1024;
/// Largest `queue` (the channel is allocated up front, one slot per item).
pub const MAX_QUEUE: u32 = 65536;
/// Largest `max_in_flight`.
pub const MAX_IN_FLIGHT: u32 = 65536;

/// The allowed maximum of a stage setting (`workers`, `queue`, `max_in_flight`).
pub fn setting_max(name: &str) -> Option<u32> {
    match name {
        "workers" => Some(MAX_WORKERS),
        "queue" => Some(MAX_QUEUE),
        "max_in_flight" => Some(MAX_IN_FLIGHT),
        _ => None,
    }
}

fn default_workers() -> Loc<u32> {
    Loc::synthetic(1)
}

/// A parse error with its position.
#[derive(Debug)]
pub struct ParseError {
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! { strict_booleans: true }
}

/// Parses pipeline YAML text. `origin` names the file in messages.
pub fn parse(text: &str, origin: &str) -> Result<PipelineFile, ParseError> {
    serde_saphyr::from_str_with_options::<PipelineFile>(text, yaml_options()).map_err(|e| {
        ParseError {
            message: format!("{origin}: {e}"),
        }
    })
}

/// Parses a `--set` value as a YAML scalar or flow collection (`3`, `true`, `[1, 2]`, `axial`).
pub fn parse_value(text: &str) -> Value {
    serde_saphyr::from_str_with_options::<Value>(text, yaml_options())
        .unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Reads and parses a pipeline file.
pub fn load(path: &Path) -> Result<PipelineFile, ParseError> {
    let text = std::fs::read_to_string(path).map_err(|e| ParseError {
        message: format!("{}: cannot read pipeline file: {e}", path.display()),
    })?;
    parse(&text, &path.display().to_string())
}

/// Applies `--set stage.param=value` overrides (`stage.workers`, `stage.queue`,
/// `stage.max_in_flight` and `stage.timeout` set the stage's own settings).
pub fn apply_overrides(file: &mut PipelineFile, sets: &[String]) -> Result<(), String> {
    for s in sets {
        let (lhs, value) = s
            .split_once('=')
            .ok_or_else(|| format!("--set {s}: expected STAGE.PARAM=VALUE"))?;
        let (stage, param) = lhs
            .split_once('.')
            .ok_or_else(|| format!("--set {s}: expected STAGE.PARAM=VALUE"))?;
        let ids: Vec<String> = file.stages.iter().map(|st| st.id.value.clone()).collect();
        let st = file
            .stages
            .iter_mut()
            .find(|st| st.id.value == stage)
            .ok_or_else(|| {
                format!(
                    "--set {s}: no stage with id '{stage}' (stages: {})",
                    ids.join(", ")
                )
            })?;
        // The stage's own settings first (a plugin parameter cannot shadow them).
        if param == "timeout" {
            // Checked (with the file's values) in `plan::build`.
            st.timeout = Some(Loc::synthetic(DurationValue::Text(
                value.trim().to_string(),
            )));
            continue;
        }
        if let Some(max) = setting_max(param) {
            // Parsed wide, so a value past u32 gets the same message as one past the maximum
            // (the range itself is checked with the file's values, in `plan::build`).
            let wide: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("--set {s}: {param} must be a whole number"))?;
            let n = u32::try_from(wide).map_err(|_| {
                format!("--set {s}: stage '{stage}': {param} {wide} is above the maximum of {max}")
            })?;
            let n = Loc::synthetic(n);
            match param {
                "workers" => st.workers = n,
                "queue" => st.queue = Some(n),
                _ => st.max_in_flight = Some(n),
            }
            continue;
        }
        let value = parse_value(value);
        let key = Loc::synthetic(param.to_string());
        st.params.remove(&key);
        st.params.insert(key, Loc::synthetic(value));
    }
    Ok(())
}

/// The JSON Schema of pipeline files, for editor completion.
pub fn json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(PipelineFile)).unwrap_or(Value::Null)
}

/// Resolves a path written in a pipeline file relative to that file's folder.
pub fn resolve_relative(pipeline_path: Option<&Path>, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    match pipeline_path.and_then(Path::parent) {
        Some(dir) if path.is_relative() && !dir.as_os_str().is_empty() => dir.join(path),
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_recorded_and_booleans_are_strict() {
        let y = "pipeline: p\nstages:\n  - id: a\n    use: x.y\n    params:\n      flag: yes\n";
        let f = parse(y, "t.yaml").unwrap();
        let st = &f.stages[0];
        assert_eq!((st.uses.line, st.uses.column), (4, 10));
        let (k, v) = st.params.iter().next().unwrap();
        assert_eq!(k.value, "flag");
        assert_eq!(k.line, 6);
        assert_eq!(v.value, Value::String("yes".into()));
    }

    #[test]
    fn unknown_keys_are_rejected_with_a_position() {
        let y = "pipeline: p\nstages:\n  - id: a\n    use: x.y\n    worker: 2\n";
        let e = parse(y, "t.yaml").unwrap_err().message;
        assert!(e.contains("worker"), "{e}");
        assert!(e.contains("t.yaml"), "{e}");
        assert!(e.contains('5'), "line number missing: {e}");
    }

    #[test]
    fn overrides_replace_params() {
        let y = "pipeline: p\nstages:\n  - id: a\n    use: x.y\n    params: {q: 1}\n";
        let mut f = parse(y, "t.yaml").unwrap();
        apply_overrides(&mut f, &["a.q=90".into(), "a.plane=all".into()]).unwrap();
        let p = &f.stages[0].params;
        assert_eq!(p[&Loc::synthetic("q".to_string())].value, Value::from(90));
        assert_eq!(
            p[&Loc::synthetic("plane".to_string())].value,
            Value::from("all")
        );
        assert!(apply_overrides(&mut f, &["b.q=1".into()]).is_err());
        apply_overrides(&mut f, &["a.workers=3".into(), "a.max_in_flight=1".into()]).unwrap();
        assert_eq!(f.stages[0].workers.value, 3);
        assert_eq!(f.stages[0].max_in_flight.as_ref().map(|m| m.value), Some(1));
        assert!(!f.stages[0].params.keys().any(|k| k.value == "workers"));
        assert!(apply_overrides(&mut f, &["a.queue=many".into()]).is_err());
        apply_overrides(&mut f, &["a.timeout=90s".into()]).unwrap();
        let t = f.stages[0].timeout.as_ref().map(|t| t.value.to_duration());
        assert_eq!(t, Some(Ok(Duration::from_secs(90))));
    }

    #[test]
    fn timeouts_take_ms_s_m_h_or_seconds_and_refuse_zero_huge_and_unknown_units() {
        let d = |v: DurationValue| v.to_duration();
        let t = |s: &str| d(DurationValue::Text(s.into()));
        assert_eq!(t("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(t("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(t("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(t("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(t("2"), Ok(Duration::from_secs(2)));
        assert_eq!(
            d(DurationValue::Seconds(1.5)),
            Ok(Duration::from_millis(1500))
        );
        for bad in ["0s", "0", "25h", "1d", "soon", ""] {
            assert!(t(bad).is_err(), "{bad} accepted");
        }
        assert!(d(DurationValue::Seconds(-1.0)).is_err());
        assert!(d(DurationValue::Seconds(f64::INFINITY)).is_err());
        assert!(t("25h").unwrap_err().contains("maximum"));
    }

    #[test]
    fn a_set_setting_past_u32_is_refused_naming_the_stage_value_and_maximum() {
        let y = "pipeline: p\nstages:\n  - id: a\n    use: x.y\n";
        let mut f = parse(y, "t.yaml").unwrap();
        let e = apply_overrides(&mut f, &["a.queue=99999999999".into()]).unwrap_err();
        assert!(e.contains("stage 'a'") && e.contains("99999999999"), "{e}");
        assert!(e.contains(&MAX_QUEUE.to_string()), "{e}");
        // In range for u32: kept, for `plan::build` to check against the maximum.
        apply_overrides(&mut f, &["a.queue=4294967295".into()]).unwrap();
        assert_eq!(f.stages[0].queue.as_ref().map(|q| q.value), Some(u32::MAX));
    }
}
