//! De-identification (PS3.15 E.1 basic profile), UID hashing, sidecar and
//! output-name sanitising.

use super::header::SeriesMeta;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Attributes of the Basic Application Level Confidentiality Profile that this
/// module knows how to emit when (and only when) allow-listed, as
/// (keyword, group, element).
pub(crate) const PHI_TAGS: &[(&str, u16, u16)] = &[
    ("PatientName", 0x0010, 0x0010),
    ("PatientID", 0x0010, 0x0020),
    ("IssuerOfPatientID", 0x0010, 0x0021),
    ("PatientBirthDate", 0x0010, 0x0030),
    ("PatientBirthTime", 0x0010, 0x0032),
    ("PatientSex", 0x0010, 0x0040),
    ("OtherPatientIDs", 0x0010, 0x1000),
    ("OtherPatientNames", 0x0010, 0x1001),
    ("PatientBirthName", 0x0010, 0x1005),
    ("PatientAge", 0x0010, 0x1010),
    ("PatientSize", 0x0010, 0x1020),
    ("PatientWeight", 0x0010, 0x1030),
    ("PatientAddress", 0x0010, 0x1040),
    ("PatientMotherBirthName", 0x0010, 0x1060),
    ("MilitaryRank", 0x0010, 0x1080),
    ("MedicalRecordLocator", 0x0010, 0x1090),
    ("PatientTelephoneNumbers", 0x0010, 0x2154),
    ("EthnicGroup", 0x0010, 0x2160),
    ("Occupation", 0x0010, 0x2180),
    ("AdditionalPatientHistory", 0x0010, 0x21B0),
    ("PatientComments", 0x0010, 0x4000),
    ("InstitutionName", 0x0008, 0x0080),
    ("InstitutionAddress", 0x0008, 0x0081),
    ("InstitutionalDepartmentName", 0x0008, 0x1040),
    ("ReferringPhysicianName", 0x0008, 0x0090),
    ("ReferringPhysicianAddress", 0x0008, 0x0092),
    ("PhysiciansOfRecord", 0x0008, 0x1048),
    ("PerformingPhysicianName", 0x0008, 0x1050),
    ("NameOfPhysiciansReadingStudy", 0x0008, 0x1060),
    ("OperatorsName", 0x0008, 0x1070),
    ("RequestingPhysician", 0x0032, 0x1032),
    ("StationName", 0x0008, 0x1010),
    ("DeviceSerialNumber", 0x0018, 0x1000),
    ("AccessionNumber", 0x0008, 0x0050),
    ("StudyID", 0x0020, 0x0010),
    ("StudyDescription", 0x0008, 0x1030),
    ("RequestedProcedureDescription", 0x0032, 0x1060),
    ("PerformedProcedureStepDescription", 0x0040, 0x0254),
    ("ImageComments", 0x0020, 0x4000),
    ("InstanceCreationDate", 0x0008, 0x0012),
    ("InstanceCreationTime", 0x0008, 0x0013),
    ("StudyDate", 0x0008, 0x0020),
    ("SeriesDate", 0x0008, 0x0021),
    ("AcquisitionDate", 0x0008, 0x0022),
    ("ContentDate", 0x0008, 0x0023),
    ("AcquisitionDateTime", 0x0008, 0x002A),
    ("StudyTime", 0x0008, 0x0030),
    ("SeriesTime", 0x0008, 0x0031),
    ("AcquisitionTime", 0x0008, 0x0032),
    ("ContentTime", 0x0008, 0x0033),
];

/// Keywords of the confidentiality-profile attributes that can be kept with
/// [`DeidOptions::keep`].
pub const PHI_KEYWORDS: &[&str] = &[
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "PatientAddress",
    "PatientMotherBirthName",
    "MilitaryRank",
    "MedicalRecordLocator",
    "PatientTelephoneNumbers",
    "EthnicGroup",
    "Occupation",
    "AdditionalPatientHistory",
    "PatientComments",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "ReferringPhysicianAddress",
    "PhysiciansOfRecord",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "RequestingPhysician",
    "StationName",
    "DeviceSerialNumber",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "RequestedProcedureDescription",
    "PerformedProcedureStepDescription",
    "ImageComments",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "AcquisitionDateTime",
    "StudyTime",
    "SeriesTime",
    "AcquisitionTime",
    "ContentTime",
];

/// De-identification options. Default: keep nothing of PS3.15 E.1.
#[derive(Debug, Clone, Default)]
pub struct DeidOptions {
    /// DICOM keywords (from [`PHI_KEYWORDS`]) to keep verbatim in the sidecar.
    pub keep: BTreeSet<String>,
    /// Optional secret mixed into UID hashes (same salt → same hashes).
    pub uid_salt: String,
}

impl DeidOptions {
    /// Allow-list the given keywords.
    pub fn keeping<I: IntoIterator<Item = S>, S: Into<String>>(keys: I) -> Self {
        DeidOptions {
            keep: keys.into_iter().map(Into::into).collect(),
            uid_salt: String::new(),
        }
    }
}

/// Stable replacement for a UID: `2.25.<decimal of the first 128 bits of
/// SHA-256(salt || uid)>` (a valid UID, at most 44 characters).
pub fn hash_uid(uid: &str, salt: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(b"\0");
    h.update(uid.trim_end_matches('\0').trim().as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// A DICOM value as a name token, with dcm2niix's character policy: only
/// `[A-Za-z0-9._+=-]` kept (other characters, including path separators and control
/// characters, become `_`), no `..`, no leading dot or dash, at most 64 characters. The
/// stages that write files also pass every name through the one output sanitiser,
/// `mindscan_sdk::naming::sanitize_component`.
pub fn sanitize_token(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let ok = c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '=');
        let c = if ok { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        if c == '.' && out.ends_with('.') {
            out.pop();
            out.push('_');
            continue;
        }
        out.push(c);
    }
    let out = out
        .trim_start_matches(['.', '-', '_'])
        .trim_end_matches(['_', '.']);
    let mut out: String = out.chars().take(64).collect();
    while out.ends_with('.') {
        out.pop();
    }
    out
}

/// Expand a dcm2niix-like name template. Only non-identifying specifiers are
/// supported: `%p` protocol, `%s` series number, `%d` description, `%m`
/// modality, `%e` echo number, `%j` hashed series UID, `%%` a percent sign.
/// Anything else expands to nothing. The result is sanitised and at most 200
/// characters; never empty.
pub(crate) fn format_name(meta: &SeriesMeta, template: &str) -> String {
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else { break };
        let tok = match spec {
            'p' => meta
                .protocol
                .clone()
                .or_else(|| meta.series_description.clone())
                .unwrap_or_default(),
            'd' => meta.series_description.clone().unwrap_or_default(),
            's' => meta
                .series_number
                .map(|n| n.to_string())
                .unwrap_or_default(),
            'm' => meta.modality.clone().unwrap_or_default(),
            'e' => meta.echo_number.map(|n| n.to_string()).unwrap_or_default(),
            'j' => hash_uid(&meta.series_uid, ""),
            '%' => "%".into(),
            _ => String::new(),
        };
        out.push_str(&sanitize_token(&tok));
    }
    if meta.field_map_hz {
        // dcm2niix's suffix for the field map of a GE B0 map series.
        out.push_str("_fieldmaphz");
    }
    let mut s = sanitize_token_long(&out);
    if s.is_empty() {
        s = "unnamed".into();
    }
    s
}

fn sanitize_token_long(s: &str) -> String {
    // Same rules as sanitize_token but with a 200 character bound.
    let parts: Vec<String> = s
        .split('_')
        .map(sanitize_token)
        .filter(|p| !p.is_empty())
        .collect();
    let joined = parts.join("_");
    let mut j: String = joined.chars().take(200).collect();
    while j.ends_with(['.', '_']) {
        j.pop();
    }
    j
}

pub(crate) fn normalize_manufacturer(m: &str) -> String {
    let u = m.to_ascii_uppercase();
    if u.contains("SIEMENS") {
        "Siemens".into()
    } else if u.starts_with("GE ") || u.contains("GE MEDICAL") || u == "GE" {
        "GE".into()
    } else if u.contains("PHILIPS") {
        "Philips".into()
    } else if u.contains("TOSHIBA") || u.contains("CANON") {
        "Canon".into()
    } else if u.contains("HITACHI") {
        "Hitachi".into()
    } else if u.contains("UIH") || u.contains("UNITED IMAGING") {
        "UIH".into()
    } else {
        m.to_string()
    }
}

/// Series-level information the sidecar needs beyond the header.
pub(crate) struct SidecarExtra<'a> {
    pub recon_rows: u32,
    pub recon_cols: u32,
    pub warnings: &'a [String],
    pub slice_timing_s: Option<Vec<f64>>,
    pub philips: Option<PhilipsSidecar>,
    /// The volume TR (which can differ from RepetitionTime (0018,0080), see `load`).
    pub repetition_time_s: Option<f64>,
    pub repetition_time_excitation_s: Option<f64>,
}

/// Philips scaling as dcm2niix reports it.
pub(crate) struct PhilipsSidecar {
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub scale_slope: f64,
    pub float_scaling: bool,
}

pub(crate) fn sidecar(m: &SeriesMeta, x: &SidecarExtra, opts: &DeidOptions) -> Map<String, Value> {
    let mut j = Map::new();
    fn put_in(j: &mut Map<String, Value>, k: &str, v: Option<Value>) {
        if let Some(v) = v {
            j.insert(k.to_string(), v);
        }
    }
    macro_rules! put {
        ($k:expr, $v:expr $(,)?) => {
            put_in(&mut j, $k, $v)
        };
    }
    let s = |v: &Option<String>| v.as_ref().map(|s| json!(s));
    let f = |v: Option<f64>| v.map(|x| json!(x));
    put!("Modality", s(&m.modality));
    put!("MagneticFieldStrength", f(m.field_strength));
    put!("ImagingFrequency", f(m.imaging_frequency));
    for (k, v) in &m.acquisition {
        put!(k, Some(v.clone()));
    }
    put!(
        "Manufacturer",
        m.manufacturer
            .as_deref()
            .map(|v| json!(normalize_manufacturer(v))),
    );
    put!("ManufacturersModelName", s(&m.model));

    put!("PatientPosition", s(&m.patient_position));
    put!("SoftwareVersions", s(&m.software_versions));
    put!("MRAcquisitionType", s(&m.mr_acquisition_type));
    put!("SeriesDescription", s(&m.series_description));
    put!("ProtocolName", s(&m.protocol));
    put!("ScanningSequence", s(&m.scanning_sequence));
    put!("SequenceVariant", s(&m.sequence_variant));
    put!("ScanOptions", s(&m.scan_options));
    put!("SequenceName", s(&m.sequence_name));
    if !m.image_type.is_empty() {
        // As dcm2niix: values split on '_' and the image class appended.
        let mut it: Vec<String> = m
            .image_type
            .iter()
            .flat_map(|v| v.split('_').map(str::to_string).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .collect();
        // A field map in Hz is neither magnitude nor real: dcm2niix marks it FIELDMAPHZ.
        let class = if m.field_map_hz {
            "FIELDMAPHZ".to_string()
        } else {
            super::scan::image_class(&m.image_type).to_ascii_uppercase()
        };
        if !it.contains(&class) {
            it.push(class);
        }
        put!("ImageType", Some(json!(it)));
    }
    put!("SeriesNumber", m.series_number.map(|v| json!(v)));
    put!("AcquisitionNumber", m.acquisition_number.map(|v| json!(v)));
    put!("SliceThickness", f(m.slice_thickness));
    put!("SpacingBetweenSlices", f(m.spacing_between_slices));
    put!("EchoNumber", m.echo_number.map(|v| json!(v)));
    match (m.field_map_hz, m.ge_velocity_encode_scale) {
        // GE field map: the echo time difference is -1/(2π·VelocityEncodeScale).
        (true, Some(ves)) if ves < 0.0 => {
            let te = m.echo_time_ms.map(|v| v / 1000.0);
            put!("EchoTime1", f(te));
            put!(
                "EchoTime2",
                f(te.map(|t| t - 1.0 / (2.0 * std::f64::consts::PI * ves)))
            );
        }
        _ => put!("EchoTime", f(m.echo_time_ms.map(|v| v / 1000.0))),
    }
    if m.field_map_hz {
        put!("Units", Some(json!("Hz")));
    }
    put!("RepetitionTime", f(x.repetition_time_s));
    put!(
        "RepetitionTimeExcitation",
        f(x.repetition_time_excitation_s),
    );
    put!(
        "InversionTime",
        f(m.inversion_time_ms.filter(|v| *v > 0.0).map(|v| v / 1000.0)),
    );
    put!("FlipAngle", f(m.flip_angle));
    put!("PixelBandwidth", f(m.pixel_bandwidth));
    let pe_col = m
        .inplane_pe_dir
        .as_deref()
        .map(|d| d.to_ascii_uppercase().starts_with("COL"));
    if m.acquisition_matrix.len() == 4 {
        let a = &m.acquisition_matrix;
        let pe = match pe_col {
            Some(true) => a[2],
            Some(false) => a[3],
            None => 0,
        };
        // Some vendors fill the other phase entry; fall back to the non-zero one.
        let pe = if pe > 0 { pe } else { a[2].max(a[3]) };
        if pe > 0 {
            put!("AcquisitionMatrixPE", Some(json!(pe)));
        }
    } else if let Some(pe) = m.pe_steps_in_plane.filter(|v| *v > 0) {
        put!("AcquisitionMatrixPE", Some(json!(pe)));
    }
    if let Some(col) = pe_col {
        put!(
            "ReconMatrixPE",
            Some(json!(if col { x.recon_rows } else { x.recon_cols })),
        );
        put!(
            "PhaseEncodingAxis",
            Some(json!(if col { "j" } else { "i" })),
        );
        put!(
            "InPlanePhaseEncodingDirectionDICOM",
            Some(json!(if col { "COL" } else { "ROW" })),
        );
    }
    if let Some((slope, inter)) = m.philips_rwv {
        put!("PhilipsRWVSlope", f(Some(slope)));
        put!("PhilipsRWVIntercept", f(Some(inter)));
    }
    if let Some(p) = &x.philips {
        put!("PhilipsRescaleSlope", f(Some(p.rescale_slope)));
        put!("PhilipsRescaleIntercept", f(Some(p.rescale_intercept)));
        put!("PhilipsScaleSlope", f(Some(p.scale_slope)));
        put!(
            "UsePhilipsFloatNotDisplayScaling",
            Some(json!(i32::from(p.float_scaling))),
        );
    }
    let recon_pe = pe_col.map(|col| if col { x.recon_rows } else { x.recon_cols });
    let pe_lines = j.get("AcquisitionMatrixPE").and_then(|v| v.as_i64());
    for (k, v) in readout_keys(m, recon_pe, pe_lines, pe_col) {
        j.insert(k.to_string(), v);
    }
    if let Some(t) = &x.slice_timing_s {
        put!("SliceTiming", Some(json!(t)));
    }
    if let Some(o) = m.orientation {
        put!("ImageOrientationPatientDICOM", Some(json!(o)));
    }
    if !m.series_uid.is_empty() {
        put!(
            "SeriesInstanceUID",
            Some(json!(hash_uid(&m.series_uid, &opts.uid_salt))),
        );
    }
    if !m.study_uid.is_empty() {
        put!(
            "StudyInstanceUID",
            Some(json!(hash_uid(&m.study_uid, &opts.uid_salt))),
        );
    }
    for (k, v) in &m.phi {
        if opts.keep.contains(k) {
            put!(k, Some(json!(v)));
        }
    }
    if !x.warnings.is_empty() {
        put!("Warnings", Some(json!(x.warnings)));
    }
    put!("ConversionSoftware", Some(json!("mindscan")));
    put!(
        "DeidentificationMethod",
        Some(json!(if opts.keep.is_empty() {
            "PS3.15 E.1 Basic Profile (descriptors retained, UIDs hashed)"
        } else {
            "PS3.15 E.1 Basic Profile with explicit allow-list"
        })),
    );
    j
}

/// Echo spacing, readout time, phase-encoding direction and dwell time, with dcm2niix's
/// formulas per vendor (all in seconds):
/// * Siemens: EffectiveEchoSpacing = 1 / (BandwidthPerPixelPhaseEncode · ReconMatrixPE),
///   TotalReadoutTime = EES · (ReconMatrixPE − 1); the direction's sign from the CSA header.
/// * GE: PE lines rounded up to a multiple of 2 (4 with partial Fourier) after acceleration;
///   EES = (lines − 1) · ESP / (AcquisitionMatrixPE − 1).
/// * Philips (no echo spacing in the file): the *Estimated* keys from the water-fat shift,
///   ES = WFS / (ImagingFrequency · 3.4 · (ETL + 1)), TRT = ES · ETL, EES = TRT / (ReconMatrixPE − 1).
fn readout_keys(
    m: &SeriesMeta,
    recon_pe: Option<u32>,
    pe_lines: Option<i64>,
    pe_col: Option<bool>,
) -> Vec<(&'static str, Value)> {
    let r = &m.readout;
    let mut out = Vec::new();
    let recon = recon_pe.map(f64::from).filter(|v| *v > 1.0);
    if let Some(bw) = r.bandwidth_per_pixel_pe.filter(|v| *v > 0.0) {
        out.push(("BandwidthPerPixelPhaseEncode", json!(bw)));
        if let Some(n) = recon {
            let ees = 1.0 / (bw * n);
            out.push(("EffectiveEchoSpacing", json!(ees)));
            out.push(("DerivedVendorReportedEchoSpacing", json!(ees)));
            out.push(("TotalReadoutTime", json!(ees * (n - 1.0))));
        }
    }
    if let Some(ns) = r.dwell_ns.filter(|v| *v > 0.0) {
        out.push(("DwellTime", json!(ns * 1e-9)));
    }
    if let (Some(esp), Some(lines), Some(n)) = (r.ge_echo_spacing_us, pe_lines, recon)
        && esp > 0.0
        && lines > 1
    {
        let accel = r
            .ge_asset
            .filter(|a| *a > 0.0)
            .map(|a| 1.0 / a)
            .unwrap_or(1.0);
        let round = if r.partial_fourier { 4.0 } else { 2.0 };
        let acquired = ((lines as f64 / accel) / round).ceil() * round;
        let ees = (acquired - 1.0) * esp * 1e-6 / (lines as f64 - 1.0);
        out.push(("EffectiveEchoSpacing", json!(ees)));
        out.push(("TotalReadoutTime", json!(ees * (n - 1.0))));
    }
    if let (Some(wfs), Some(f), Some(etl), Some(n)) = (
        r.water_fat_shift.filter(|v| *v != 0.0),
        m.imaging_frequency.filter(|v| *v > 0.0),
        m.echo_train_length.filter(|v| *v > 0),
        recon,
    ) {
        let es = wfs / (f * 3.4 * (etl as f64 + 1.0));
        let trt = es * etl as f64;
        out.push(("EstimatedEffectiveEchoSpacing", json!(trt / (n - 1.0))));
        out.push(("EstimatedTotalReadoutTime", json!(trt)));
    }
    if let Some(flipped) = r.ge_flipped {
        out.push((
            "PhaseEncodingPolarityGE",
            json!(if flipped { "Flipped" } else { "Unflipped" }),
        ));
    }
    // Only 2D acquisitions get a direction (dcm2niix leaves it out for 3D); rows are flipped
    // on the way to NIfTI, so a positive column direction is j-.
    if let (Some(col), Some(pos)) = (pe_col, r.pe_positive)
        && m.mr_acquisition_type.as_deref() != Some("3D")
    {
        let dir = match (col, pos) {
            (true, true) => "j-",
            (true, false) => "j",
            (false, true) => "i",
            (false, false) => "i-",
        };
        out.push(("PhaseEncodingDirection", json!(dir)));
    }
    out
}
