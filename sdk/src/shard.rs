//! Deterministic shards: the same pipeline run as N processes (a Slurm array, a Kubernetes
//! Indexed Job), each keeping the inputs whose key hashes to its index. The hash is FNV-1a
//! (64-bit) of the key's bytes: fixed by this file, the same on every machine and build, so the
//! N processes agree on who does what without talking to each other.

use std::fmt;
use std::str::FromStr;

/// This process's share of the inputs: shard `index` of `count` (`0 <= index < count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole input: one shard of one.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`; `None` when `count` is 0 or `index` is not below it.
    pub fn new(index: u32, count: u32) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    /// Whether the run is split at all.
    pub fn is_split(&self) -> bool {
        self.count > 1
    }

    /// Whether the input with this key is this shard's. Sources pass the key that must keep
    /// related inputs together (a DICOM study's UID, a file's path).
    pub fn keeps(&self, key: &str) -> bool {
        self.count <= 1 || shard_of(key, self.count) == self.index
    }

    /// Whether work number `n` of a numbered sequence (a sampler's batches) is this shard's:
    /// round-robin, so shards differ by at most one.
    pub fn keeps_number(&self, n: u64) -> bool {
        self.count <= 1 || n % u64::from(self.count) == u64::from(self.index)
    }

    /// Inserted before the extension of files every shard writes once (manifests):
    /// `manifest.csv` → `manifest.shard-2-of-8.csv`; `None` for an unsplit run.
    pub fn part_name(&self, file_name: &str) -> Option<String> {
        if !self.is_split() {
            return None;
        }
        let tag = format!("shard-{}-of-{}", self.index, self.count);
        Some(match file_name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{tag}.{ext}"),
            _ => format!("{file_name}.{tag}"),
        })
    }
}

/// The shard (of `count`) a key falls in.
pub fn shard_of(key: &str, count: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(count.max(1))) as u32
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `i/N`, e.g. `0/3`.
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("shard '{s}': expected INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i: u32 = i.trim().parse().map_err(|_| bad())?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_kept_by_exactly_one_shard() {
        for n in 1..6 {
            for k in 0..200 {
                let key = format!("/data/sub-{k:03}/anat.nii.gz");
                let owners = (0..n).filter(|&i| Shard::new(i, n).unwrap().keeps(&key));
                assert_eq!(owners.count(), 1, "{key} of {n}");
            }
        }
        // Spread: 3 shards of 300 keys each get a fair share.
        let counts: Vec<usize> = (0..3)
            .map(|i| {
                (0..300)
                    .filter(|k| shard_of(&format!("k{k}"), 3) == i)
                    .count()
            })
            .collect();
        assert!(counts.iter().all(|&c| c > 70), "{counts:?}");
    }

    #[test]
    fn the_hash_is_fnv1a_and_parsing_checks_the_range() {
        // FNV-1a 64 of "a" (the published test vector): 0xaf63dc4c8601ec8c.
        assert_eq!(
            shard_of("a", u32::MAX),
            (0xaf63_dc4c_8601_ec8c_u64 % u64::from(u32::MAX)) as u32
        );
        assert_eq!(
            "2/3".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 3 }
        );
        for bad in ["3/3", "1/0", "x/2", "1", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let s = Shard::new(1, 4).unwrap();
        assert_eq!(
            s.part_name("manifest.csv").unwrap(),
            "manifest.shard-1-of-4.csv"
        );
        assert_eq!(Shard::ALL.part_name("manifest.csv"), None);
    }
}
