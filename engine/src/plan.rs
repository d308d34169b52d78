//! Turns a parsed pipeline file into a runnable plan, checking everything that can be checked
//! before a single item flows: stage names, parameters against each stage's schema, roles,
//! dangling inputs, cycles and item kinds on every edge. All problems are reported at once, each
//! with its file:line:column.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use mindscan_sdk::{Role, kinds};
use serde_json::{Map, Value};

use crate::config::{Loc, MAX_IN_FLIGHT, MAX_QUEUE, MAX_WORKERS, OnError, PipelineFile};
use crate::host::check_params;
use crate::registry::{Registry, StageType};

/// One problem in a pipeline file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// All problems found in a file.
#[derive(Debug)]
pub struct Diagnostics {
    pub origin: String,
    pub items: Vec<Diagnostic>,
}

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if d.line == 0 {
                write!(f, "{}: error: {}", self.origin, d.message)?;
            } else {
                write!(
                    f,
                    "{}:{}:{}: error: {}",
                    self.origin, d.line, d.column, d.message
                )?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Default queue in front of a stage.
const DEFAULT_QUEUE: usize = 16;
/// Default queue in front of a stage that takes only 2D images.
const DEFAULT_IMAGE_QUEUE: usize = 128;

/// A stage ready to run.
pub struct PlannedStage {
    pub id: String,
    pub ty: StageType,
    pub params: Value,
    pub workers: usize,
    pub queue: usize,
    /// Sources: items of this stage allowed in flight at once.
    pub max_in_flight: usize,
    pub on_error: OnError,
    /// Stages with inputs: the longest one item's `process` may take.
    pub timeout: Option<std::time::Duration>,
    /// Indices (into `Plan::stages`) of the stages feeding this one.
    pub inputs: Vec<usize>,
    /// Indices of the stages this one feeds.
    pub outputs: Vec<usize>,
    /// Kinds of item this stage can produce.
    pub out_kinds: BTreeSet<String>,
}

/// A validated pipeline, stages in topological order (sources first).
pub struct Plan {
    pub name: String,
    pub seed: u64,
    pub dead_letter: PathBuf,
    /// Where stages keep durable state (see `PipelineFile::state_dir`).
    pub state_dir: PathBuf,
    pub stages: Vec<PlannedStage>,
}

struct Checker {
    items: Vec<Diagnostic>,
}

impl Checker {
    fn err<T>(&mut self, at: &Loc<T>, message: impl Into<String>) {
        self.items.push(Diagnostic {
            line: at.line,
            column: at.column,
            message: message.into(),
        });
    }

    /// A stage setting above its maximum (the runtime allocates queues and starts threads up
    /// front, so `queue: 4294967295` must stop here, not abort the run).
    fn at_most(&mut self, stage: &str, name: &str, at: &Loc<u32>, max: u32) {
        if at.value <= max {
            return;
        }
        let mut msg = format!(
            "stage '{stage}': {name} {} is above the maximum of {max}",
            at.value
        );
        if at.line == 0 {
            msg = format!("--set {stage}.{name}: {msg}");
        }
        self.err(at, msg);
    }
}

fn hint(candidates: &[String]) -> String {
    if candidates.is_empty() {
        String::new()
    } else {
        format!(
            "; did you mean {}?",
            candidates
                .iter()
                .map(|c| format!("'{c}'"))
                .collect::<Vec<_>>()
                .join(" or ")
        )
    }
}

fn close<'a>(name: &str, pool: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = pool
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(s, _)| *s > 0.75)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored
        .into_iter()
        .take(3)
        .map(|(_, k)| k.to_string())
        .collect()
}

/// Names of the params a schema declares.
fn schema_properties(schema: &Value) -> Vec<String> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Checks `file` against `registry` and builds the plan.
pub fn build(
    file: &PipelineFile,
    registry: &Registry,
    origin: &str,
    pipeline_path: Option<&Path>,
) -> Result<Plan, Diagnostics> {
    let mut c = Checker { items: Vec::new() };
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    let mut types: Vec<Option<&StageType>> = Vec::new();
    let mut params_json: Vec<Value> = Vec::new();

    if file.stages.is_empty() {
        c.err(&file.pipeline, "the pipeline has no stages");
    }
    for (i, st) in file.stages.iter().enumerate() {
        // The first stage with an id owns it; later ones are reported (and not wired, so a
        // duplicate does not also show up as a bogus self-cycle).
        if index_of.contains_key(st.id.value.as_str()) {
            c.err(&st.id, format!("stage id '{}' is used twice", st.id.value));
        } else {
            index_of.insert(st.id.value.as_str(), i);
        }
        let ty = registry.get(&st.uses.value);
        if ty.is_none() {
            let near = registry.close_names(&st.uses.value);
            c.err(
                &st.uses,
                format!(
                    "unknown stage '{}'{}; `mindscan plugins` lists the stages available",
                    st.uses.value,
                    hint(&near)
                ),
            );
        }
        if st.workers.value == 0 {
            c.err(&st.workers, "workers must be at least 1");
        }
        c.at_most(&st.id.value, "workers", &st.workers, MAX_WORKERS);
        if let Some(q) = &st.queue {
            if q.value == 0 {
                c.err(q, "queue must be at least 1");
            }
            c.at_most(&st.id.value, "queue", q, MAX_QUEUE);
        }
        if let Some(m) = &st.max_in_flight {
            if m.value == 0 {
                c.err(m, "max_in_flight must be at least 1");
            }
            c.at_most(&st.id.value, "max_in_flight", m, MAX_IN_FLIGHT);
            if !st.inputs.is_empty() || ty.is_some_and(|t| t.role != Role::Source) {
                c.err(
                    m,
                    "max_in_flight applies to sources only (stages without inputs)",
                );
            }
        }
        if let Some(t) = &st.timeout {
            if let Err(e) = t.value.to_duration() {
                c.err(t, format!("timeout: {e}"));
            }
            if st.inputs.is_empty() || ty.is_some_and(|t| t.role == Role::Source) {
                c.err(
                    t,
                    "timeout applies to stages with inputs (it limits one item's `process`; a \
                     source's `produce` runs for its whole input)",
                );
            }
        }
        let obj: Map<String, Value> = st
            .params
            .iter()
            .map(|(k, v)| (k.value.clone(), v.value.clone()))
            .collect();
        let obj = Value::Object(obj);
        if let Some(ty) = ty {
            for (path, message) in check_params(&ty.schema, &obj) {
                // Point at the offending parameter when we can, else at the stage's `use`.
                let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
                let unexpected = message
                    .split('\'')
                    .nth(1)
                    .filter(|_| message.contains("unexpected") || message.contains("Additional"));
                let key = if !first.is_empty() {
                    Some(first)
                } else {
                    unexpected
                };
                let at = key.and_then(|k| st.params.keys().find(|p| p.value == k));
                let mut msg = format!("stage '{}' ({}): bad parameter", st.id.value, ty.name);
                if let Some(k) = key {
                    msg.push_str(&format!(" '{k}'"));
                }
                msg.push_str(&format!(": {message}"));
                if let Some(k) = unexpected.filter(|_| first.is_empty()) {
                    let props = schema_properties(&ty.schema);
                    msg.push_str(&hint(&close(k, props.iter().map(String::as_str))));
                    if props.is_empty() {
                        msg.push_str("; this stage takes no parameters");
                    } else {
                        msg.push_str(&format!(" (parameters: {})", props.join(", ")));
                    }
                }
                if let Some(at) = at {
                    if at.line == 0 {
                        msg = format!("--set {}.{}: {msg}", st.id.value, at.value);
                    }
                    c.err(at, msg);
                } else {
                    c.err(&st.uses, msg);
                }
            }
            let has_inputs = !st.inputs.is_empty();
            match ty.role {
                Role::Source if has_inputs => c.err(
                    &st.inputs[0],
                    format!("stage '{}' ({}) is a source and takes no inputs", st.id.value, ty.name),
                ),
                Role::Transform | Role::Sink if !has_inputs => c.err(
                    &st.uses,
                    format!(
                        "stage '{}' ({}) is a {} and needs `inputs:` (the ids of the stages feeding it)",
                        st.id.value,
                        ty.name,
                        ty.role.as_str()
                    ),
                ),
                _ => {}
            }
        }
        types.push(ty);
        params_json.push(obj);
    }

    // Edges.
    let ids: Vec<&str> = file.stages.iter().map(|s| s.id.value.as_str()).collect();
    let mut inputs: Vec<Vec<usize>> = vec![Vec::new(); file.stages.len()];
    for (i, st) in file.stages.iter().enumerate() {
        for inp in &st.inputs {
            match index_of.get(inp.value.as_str()) {
                None => c.err(
                    inp,
                    format!(
                        "stage '{}' takes input from '{}', which is not a stage of this pipeline{}",
                        st.id.value,
                        inp.value,
                        hint(&close(&inp.value, ids.iter().copied()))
                    ),
                ),
                Some(&j) if j == i => c.err(
                    inp,
                    format!("cycle: stage '{}' takes its own output", st.id.value),
                ),
                Some(&j) => {
                    if types[j].is_some_and(|t| t.role == Role::Sink) {
                        c.err(
                            inp,
                            format!(
                                "stage '{}' takes input from '{}', which is a sink and gives no items",
                                st.id.value, inp.value
                            ),
                        );
                    }
                    inputs[i].push(j);
                }
            }
        }
    }

    // Topological order (Kahn); what is left over lies on or behind a cycle.
    let n = file.stages.len();
    let mut indegree: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let mut outputs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ins) in inputs.iter().enumerate() {
        for &j in ins {
            outputs[j].push(i);
        }
    }
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let mut ready: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).rev().collect();
    while let Some(i) = ready.pop() {
        order.push(i);
        for &o in outputs[i].iter().rev() {
            indegree[o] -= 1;
            if indegree[o] == 0 {
                ready.push(o);
            }
        }
    }
    if order.len() < n
        && let Some(cycle) = find_cycle(&inputs, &order)
    {
        let names: Vec<&str> = cycle.iter().map(|&i| ids[i]).collect();
        let first = &file.stages[cycle[0]];
        c.err(
            &first.id,
            format!("cycle: {} -> {}", names.join(" -> "), names[0]),
        );
    }

    // Item kinds along every edge.
    let mut out_kinds: Vec<BTreeSet<String>> = vec![BTreeSet::new(); n];
    for &i in &order {
        let Some(ty) = types[i] else { continue };
        let accepted: BTreeSet<String> = ty.inputs.iter().cloned().collect();
        let mut incoming = BTreeSet::new();
        for (&j, inp) in inputs[i].iter().zip(&file.stages[i].inputs) {
            let Some(up) = types[j] else { continue };
            let given = &out_kinds[j];
            let bad: Vec<&String> = given
                .iter()
                .filter(|k| !accepted.contains(*k) && !accepted.contains("any"))
                .collect();
            // A source with inputs was reported above; its kinds add nothing.
            if !bad.is_empty() && ty.role != Role::Source {
                c.err(
                    inp,
                    format!(
                        "wrong item kind: stage '{}' ({}) takes {} items, but '{}' ({}) gives {}",
                        file.stages[i].id.value,
                        ty.name,
                        join_kinds(&accepted),
                        ids[j],
                        up.name,
                        join_kinds(given)
                    ),
                );
            }
            incoming.extend(given.iter().cloned());
        }
        out_kinds[i] = if ty.outputs.iter().any(|k| k == "same") {
            incoming
        } else {
            ty.outputs.iter().cloned().collect()
        };
    }

    // Only when every stage type is known: an unknown one (reported above) may be the source.
    if !types
        .iter()
        .any(|t| t.is_some_and(|t| t.role == Role::Source))
        && types.iter().all(Option::is_some)
        && !file.stages.is_empty()
    {
        c.err(&file.pipeline, "the pipeline has no source stage");
    }
    // Plugins listed in the file that failed to load were reported by the caller.
    let _ = pipeline_path;

    if !c.items.is_empty() {
        c.items.sort_by_key(|d| (d.line == 0, d.line, d.column));
        return Err(Diagnostics {
            origin: origin.to_string(),
            items: c.items,
        });
    }

    // Renumber into topological order.
    let mut position = vec![0usize; n];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos;
    }
    let stages = order
        .iter()
        .map(|&i| {
            let st = &file.stages[i];
            PlannedStage {
                id: st.id.value.clone(),
                ty: types[i].expect("checked above").clone(),
                params: params_json[i].clone(),
                workers: st.workers.value as usize,
                queue: st
                    .queue
                    .as_ref()
                    .map(|q| q.value as usize)
                    .unwrap_or_else(|| {
                        let ty = types[i].expect("checked above");
                        if !ty.inputs.is_empty() && ty.inputs.iter().all(|k| k == kinds::IMAGE) {
                            DEFAULT_IMAGE_QUEUE
                        } else {
                            DEFAULT_QUEUE
                        }
                    }),
                max_in_flight: st
                    .max_in_flight
                    .as_ref()
                    .map(|m| m.value as usize)
                    .unwrap_or(st.workers.value as usize),
                on_error: st.on_error,
                timeout: st.timeout.as_ref().and_then(|t| t.value.to_duration().ok()),
                inputs: inputs[i].iter().map(|&j| position[j]).collect(),
                outputs: outputs[i].iter().map(|&j| position[j]).collect(),
                out_kinds: out_kinds[i].clone(),
            }
        })
        .collect();
    Ok(Plan {
        name: file.pipeline.value.clone(),
        seed: file.seed,
        dead_letter: PathBuf::from(
            file.dead_letter
                .clone()
                .unwrap_or_else(|| format!("{}.dead-letter.jsonl", file.pipeline.value)),
        ),
        state_dir: state_dir(file),
        stages,
    })
}

/// `state_dir` as given, else `.mindscan-state` in the first `out` folder of the pipeline.
fn state_dir(file: &PipelineFile) -> PathBuf {
    if let Some(d) = &file.state_dir {
        return PathBuf::from(d);
    }
    file.stages
        .iter()
        .find_map(|st| {
            st.params
                .iter()
                .find(|(k, _)| k.value == "out")
                .and_then(|(_, v)| v.value.as_str().map(PathBuf::from))
        })
        .unwrap_or_default()
        .join(".mindscan-state")
}

fn join_kinds(k: &BTreeSet<String>) -> String {
    if k.is_empty() {
        "no".to_string()
    } else {
        k.iter().cloned().collect::<Vec<_>>().join("|")
    }
}

/// Finds one cycle among the nodes not in `done`, following input edges.
fn find_cycle(inputs: &[Vec<usize>], done: &[usize]) -> Option<Vec<usize>> {
    let done: BTreeSet<usize> = done.iter().copied().collect();
    let start = (0..inputs.len()).find(|i| !done.contains(i))?;
    // Walk backwards along inputs that are also unfinished until a node repeats.
    let mut path: Vec<usize> = vec![start];
    let mut seen: BTreeMap<usize, usize> = BTreeMap::from([(start, 0)]);
    let mut cur = start;
    loop {
        let next = *inputs[cur].iter().find(|j| !done.contains(j))?;
        if let Some(&pos) = seen.get(&next) {
            let mut cyc: Vec<usize> = path[pos..].to_vec();
            cyc.reverse(); // data flows opposite to input edges
            return Some(cyc);
        }
        seen.insert(next, path.len());
        path.push(next);
        cur = next;
    }
}
