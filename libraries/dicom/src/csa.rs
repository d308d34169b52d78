//! Minimal reader for the Siemens CSA header (0029,xx10 / 0029,xx20).
//!
//! Layout (documented publicly, e.g. in the nibabel docs): optional "SV10"
//! magic + 4 bytes, u32 tag count, u32 (77), then per tag: 64-byte name,
//! i32 VM, 4-byte VR, i32 SyngoDT, i32 item count, i32 (77/205); each item:
//! 4 x i32 (item length is the 2nd) then the data padded to 4 bytes.

use std::collections::HashMap;

/// Parsed CSA element values (strings, trimmed), by element name.
pub(crate) fn parse(buf: &[u8]) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    let mut pos = if buf.starts_with(b"SV10") { 8 } else { 0 };
    let rd = |p: usize| -> Option<u32> {
        buf.get(p..p + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let Some(ntags) = rd(pos) else { return out };
    if ntags == 0 || ntags > 1000 {
        return out;
    }
    pos += 8;
    for _ in 0..ntags {
        let Some(name_b) = buf.get(pos..pos + 64) else {
            break;
        };
        let end = name_b.iter().position(|&c| c == 0).unwrap_or(64);
        let name = String::from_utf8_lossy(&name_b[..end]).to_string();
        pos += 64;
        let Some(nitems) = rd(pos + 12) else { break };
        pos += 20;
        if nitems > 10_000 {
            break;
        }
        let mut vals = Vec::new();
        for _ in 0..nitems {
            let Some(len) = rd(pos + 4) else {
                return out;
            };
            let len = len as usize;
            pos += 16;
            let Some(data) = buf.get(pos..pos + len) else {
                return out;
            };
            let s = String::from_utf8_lossy(data)
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_string();
            if !s.is_empty() {
                vals.push(s);
            }
            pos += len.div_ceil(4) * 4;
        }
        out.insert(name, vals);
    }
    out
}
