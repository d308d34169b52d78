//! `--shard`: which share of the inputs this process takes, given on the command line or by
//! the array scheduler that started it.

use mindscan_sdk::shard::Shard;

/// Resolves `--shard`: `INDEX/COUNT`, or `auto`, which reads the scheduler's variables:
/// Slurm job arrays (`SLURM_ARRAY_TASK_ID` minus `SLURM_ARRAY_TASK_MIN`, of
/// `SLURM_ARRAY_TASK_COUNT`), or a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, of
/// `MINDSCAN_SHARD_COUNT`, which the Job sets to its `completions`: Kubernetes does not pass
/// the count itself).
pub fn resolve(spec: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, String> {
    if spec != "auto" {
        return spec.parse();
    }
    let number = |name: &str| -> Result<Option<u32>, String> {
        env(name)
            .map(|v| {
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("--shard auto: {name}={v} is not a number"))
            })
            .transpose()
    };
    let (index, count, from) = if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        let count = number("SLURM_ARRAY_TASK_COUNT")?
            .ok_or("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")?;
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let index = id.checked_sub(min).ok_or_else(|| {
            format!("--shard auto: SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}")
        })?;
        (index, count, "Slurm")
    } else if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let count = number("MINDSCAN_SHARD_COUNT")?.ok_or(
            "--shard auto: JOB_COMPLETION_INDEX is set but MINDSCAN_SHARD_COUNT is not (set it to the Job's completions)",
        )?;
        (index, count, "Kubernetes")
    } else {
        return Err("--shard auto: neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set".into());
    };
    Shard::new(index, count).ok_or_else(|| {
        format!("--shard auto: {from} task {index} of {count} is not a valid shard (the array must be contiguous, e.g. --array=0-3)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn explicit_slurm_and_kubernetes() {
        assert_eq!(
            resolve("1/3", &with(&[])).unwrap(),
            Shard::new(1, 3).unwrap()
        );
        let slurm = with(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert_eq!(resolve("auto", &slurm).unwrap(), Shard::new(1, 3).unwrap());
        let k8s = with(&[("JOB_COMPLETION_INDEX", "2"), ("MINDSCAN_SHARD_COUNT", "4")]);
        assert_eq!(resolve("auto", &k8s).unwrap(), Shard::new(2, 4).unwrap());
        let err = resolve("auto", &with(&[("JOB_COMPLETION_INDEX", "0")])).unwrap_err();
        assert!(err.contains("MINDSCAN_SHARD_COUNT"), "{err}");
        assert!(resolve("auto", &with(&[])).unwrap_err().contains("neither"));
        let gap = with(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert!(resolve("auto", &gap).unwrap_err().contains("contiguous"));
        assert!(resolve("3/3", &with(&[])).is_err());
    }
}
