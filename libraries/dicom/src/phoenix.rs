//! Siemens' protocol text ("MrPhoenixProtocol", the `### ASCCONV BEGIN ###` block of the CSA
//! series header (0029,1020), or of (0021,1019) on XA systems): `key = value` lines, read the
//! way dcm2niix reads them, for the sidecar keys it takes from there.

use serde_json::{Value, json};

/// The ASCCONV block of a protocol blob, if it has one.
pub(crate) fn ascconv(blob: &[u8]) -> Option<&[u8]> {
    let begin = find(blob, b"### ASCCONV BEGIN")?;
    let rest = &blob[begin..];
    let end = find(rest, b"### ASCCONV END").unwrap_or(rest.len());
    Some(&rest[..end])
}

/// SIMD substring search: a naive window scan over the ~100 KB protocol text, 25 keys per
/// file, was 60% of converting a 96-file Siemens series.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// The rest of the line after the first occurrence of `key` (dcm2niix matches keys anywhere,
/// so `sCoilElementID.tCoilID` finds the first coil's).
fn line_after<'a>(text: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let at = find(text, key.as_bytes())? + key.len();
    let rest = &text[at..];
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The digits of the line as one integer (dcm2niix's `readKey`: `0x2` reads as 2).
fn int(text: &[u8], key: &str) -> Option<i64> {
    let digits: String = line_after(text, key)?
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits.get(..18.min(digits.len()))?.parse().ok()
}

/// The digits, dots and minus signs of the line as a number (`readKeyFloat`).
fn float(text: &[u8], key: &str) -> Option<f64> {
    let s: String = line_after(text, key)?
        .iter()
        .filter(|b| b.is_ascii_digit() || **b == b'.' || **b == b'-')
        .map(|&b| b as char)
        .collect();
    s.parse().ok()
}

/// The first quoted value of the line (`""Head_32""` gives `Head_32`).
fn string(text: &[u8], key: &str) -> Option<String> {
    let line = line_after(text, key)?;
    let s = String::from_utf8_lossy(line);
    let inner = s
        .trim_start_matches(|c: char| c != '"')
        .trim_start_matches('"');
    let v = &inner[..inner.find('"').unwrap_or(inner.len())];
    (!v.is_empty()).then(|| v.to_string())
}

/// dcm2niix's sidecar keys from the protocol text, in its units and conditions.
pub(crate) fn sidecar_keys(text: &[u8]) -> Vec<(&'static str, Value)> {
    let mut out: Vec<(&'static str, Value)> = Vec::new();
    if let Some(pf) = int(text, "sKSpace.ucPhasePartialFourier").filter(|v| *v > 0) {
        let fraction = match pf {
            1 => 0.5,
            2 => 0.625,
            4 => 0.75,
            8 => 0.875,
            _ => 1.0,
        };
        out.push(("PartialFourier", json!(fraction)));
    }
    if let Some(v) = int(text, "sKSpace.lBaseResolution").filter(|v| *v > 0) {
        out.push(("BaseResolution", json!(v)));
    }
    let shim_keys = [
        ("sGRADSPEC.asGPAData[0].lOffsetX", "sGRADSPEC.lOffsetX"),
        ("sGRADSPEC.asGPAData[0].lOffsetY", "sGRADSPEC.lOffsetY"),
        ("sGRADSPEC.asGPAData[0].lOffsetZ", "sGRADSPEC.lOffsetZ"),
    ];
    let mut shim: Vec<f64> = shim_keys
        .iter()
        .map(|(a, b)| {
            float(text, a)
                .filter(|v| *v != 0.0)
                .or_else(|| float(text, b))
                .unwrap_or(0.0)
        })
        .collect();
    shim.extend(
        (0..5).map(|i| float(text, &format!("sGRADSPEC.alShimCurrent[{i}]")).unwrap_or(0.0)),
    );
    if shim[0] != 0.0 {
        out.push(("ShimSetting", json!(shim)));
    }
    if let Some(v) =
        float(text, "sTXSPEC.asNucleusInfo[0].flReferenceAmplitude").filter(|v| *v > 0.0)
    {
        out.push(("TxRefAmp", json!(v)));
    }
    if let Some(v) = float(text, "sKSpace.dPhaseResolution").filter(|v| *v > 0.0) {
        out.push(("PhaseResolution", json!(v)));
    }
    if let Some(v) = string(text, "sCoilElementID.tCoilID") {
        out.push(("ReceiveCoilName", json!(v)));
    }
    if let Some(v) = string(text, "sCoilSelectMeas.sCoilStringForConversion") {
        out.push(("ReceiveCoilActiveElements", json!(v)));
    }
    if let Some(v) = string(text, "tSequenceFileName") {
        out.push(("PulseSequenceDetails", json!(v)));
    }
    if let Some(v) = string(text, "sWipMemBlock.tFree") {
        out.push(("WipMemBlock", json!(v)));
    }
    if let Some(v) = int(text, "sPat.lRefLinesPE").filter(|v| *v > 0) {
        out.push(("RefLinesPE", json!(v)));
    }
    match int(text, "ucCoilCombineMode") {
        Some(1) => out.push(("CoilCombinationMethod", json!("Sum of Squares"))),
        Some(2) => out.push(("CoilCombinationMethod", json!("Adaptive Combine"))),
        _ => {}
    }
    if let Some(v) = string(text, "sProtConsistencyInfo.tMeasuredBaselineString")
        .or_else(|| string(text, "sProtConsistencyInfo.tBaselineString"))
        .or_else(|| int(text, "sProtConsistencyInfo.ulConvFromVersion").map(|v| v.to_string()))
    {
        out.push(("ConsistencyInfo", json!(v)));
    }
    let accel = int(text, "sPat.lAccelFactPE").unwrap_or(0);
    if accel > 0 {
        match int(text, "sPat.ucPATMode") {
            Some(1) => out.push(("MatrixCoilMode", json!("SENSE"))),
            Some(2) => out.push(("MatrixCoilMode", json!("GRAPPA"))),
            _ => {}
        }
    }
    if accel > 1 {
        out.push(("ParallelReductionFactorInPlane", json!(accel)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] = b"junk\n### ASCCONV BEGIN object=MrProtDataImpl ###\n\
        sKSpace.lBaseResolution                  = 72\n\
        sKSpace.ucPhasePartialFourier            = 0x4\n\
        sCoilSelectMeas.aRxCoilSelectData[0].asList[0].sCoilElementID.tCoilID = \t\"\"Head_32\"\"\n\
        sGRADSPEC.asGPAData[0].lOffsetX          = -3717\n\
        sGRADSPEC.alShimCurrent[0]               = -207\n\
        sPat.lAccelFactPE                        = 2\n\
        sPat.ucPATMode                           = 0x2\n\
        ### ASCCONV END ###\nsKSpace.lBaseResolution = 99\n";

    #[test]
    fn reads_keys_as_dcm2niix_does() {
        let text = ascconv(TEXT).unwrap();
        let keys: std::collections::HashMap<_, _> = sidecar_keys(text).into_iter().collect();
        assert_eq!(keys["BaseResolution"], 72, "inside the block only");
        assert_eq!(keys["PartialFourier"], 0.75);
        assert_eq!(keys["ReceiveCoilName"], "Head_32");
        assert_eq!(keys["ShimSetting"][0], -3717.0);
        assert_eq!(keys["ShimSetting"][3], -207.0);
        assert_eq!(keys["MatrixCoilMode"], "GRAPPA");
        assert_eq!(keys["ParallelReductionFactorInPlane"], 2);
    }
}
