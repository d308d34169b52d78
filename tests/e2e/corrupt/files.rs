//! Damaged real files: truncations, NIfTI and DICOM header overwrites and bit flips, lying
//! lengths and counts.

use super::*;

#[test]
fn corrupt_truncation_at_every_kind_of_offset_is_an_error_naming_the_file() {
    let mut cases = Vec::new();
    for (src, raw, gz) in nifti_sources() {
        let hl = if nifti_kind(&raw).version == 1 {
            348
        } else {
            540
        };
        let vox = vox_offset(&raw);
        let stem = src.split('.').next().unwrap();
        for at in [
            0,
            1,
            4,
            100,
            hl - 1,
            hl,
            hl + 4,
            vox + 1,
            vox + (raw.len() - vox) / 2,
            raw.len() - 1,
        ] {
            let name = nifti_name(&format!("{stem}-cut{at}"), gz);
            cases.push(case(
                format!("nifti/{name}"),
                &name,
                encode(raw[..at].to_vec(), gz),
                How::Convert,
                Expect::Reject,
            ));
        }
        if gz {
            let z = gzip(&raw);
            for at in [0, 5, 10, 20, z.len() / 3, z.len() / 2, z.len() - 9] {
                let name = format!("{stem}-gzcut{at}.nii.gz");
                cases.push(case(
                    format!("nifti/{name}"),
                    &name,
                    z[..at].to_vec(),
                    How::Convert,
                    Expect::Reject,
                ));
            }
            // Only the gzip trailer (CRC, size) missing: the voxels are all there.
            for at in [z.len() - 8, z.len() - 1] {
                let name = format!("{stem}-gzcut{at}.nii.gz");
                cases.push(case(
                    format!("nifti/{name}"),
                    &name,
                    z[..at].to_vec(),
                    How::Convert,
                    Expect::Any,
                ));
            }
        }
    }
    for (src, b) in dicom_sources() {
        let elems = dicom_elements(&b);
        let meta_end = elems
            .iter()
            .filter(|e| e.group == 2)
            .map(|e| e.value_at + e.value_len.unwrap_or(0))
            .max()
            .unwrap();
        let pixel = elems
            .iter()
            .find(|e| e.is(0x7FE0, 0x10))
            .map(|e| e.at)
            .unwrap_or(b.len() - 16);
        let encapsulated = elems
            .iter()
            .any(|e| e.is(0x7FE0, 0x10) && e.value_len.is_none());
        let stem = src.rsplit('/').next().unwrap().trim_end_matches(".dcm");
        let mut offsets = vec![
            0,
            64,
            128,
            131,
            132,
            140,
            meta_end,
            meta_end + 1,
            (meta_end + pixel) / 2,
            pixel + 4,
            pixel + 12,
        ];
        offsets.extend([pixel + (b.len() - pixel) / 2, b.len() - 2, b.len() - 1]);
        for at in offsets {
            let name = format!("{stem}-cut{at}.dcm");
            let expect = if encapsulated && at + 8 >= b.len() {
                Expect::Any
            } else {
                Expect::Reject
            };
            cases.push(case(
                format!("dicom/{name}"),
                &name,
                b[..at].to_vec(),
                How::Convert,
                expect,
            ));
        }
    }
    // The same NIfTI truncations in one process: a folder of them beside one good file.
    let mut batch = Case {
        id: "batch/nifti-truncations".into(),
        files: vec![],
        links: vec![],
        how: How::Convert,
        expect: Expect::Any,
    };
    for c in cases
        .iter()
        .filter(|c| c.id.starts_with("nifti/") && c.expect == Expect::Reject)
        .take(50)
    {
        let mut name = b"bad-".to_vec();
        name.extend(&c.files[0].0);
        batch.files.push((name, c.files[0].1.clone()));
    }
    batch
        .files
        .push((b"functional.nii".to_vec(), read("nifti/functional.nii")));
    batch.how = How::Run(skip_pipeline("nifti.read"));
    batch.expect = Expect::Mixed(&["functional"]);
    cases.push(batch);
    run_family("truncation", cases);
}

/// `read` (on_error: skip) over `in` -> `nifti.write` into `out`.

#[test]
fn corrupt_nifti_header_overwrites_and_bit_flips_are_handled() {
    let mut cases = Vec::new();
    let lying = |n: &str| {
        n.starts_with("dims-")
            || n == "dim1=2147483648"
            || n.starts_with("vox_offset=1e12")
            || n.starts_with("vox_offset=2147483647")
    };
    for (src, raw, gz) in nifti_sources()
        .into_iter()
        .filter(|s| s.0 != "example4d.nii.gz")
    {
        let k = nifti_kind(&raw);
        let l = nifti_layout(k.version);
        let stem = src.split('.').next().unwrap();
        for e in nifti_overwrites()
            .into_iter()
            .filter(|e| !lying(&e.name) && src != "standard.nii.gz")
        {
            let mut b = raw.clone();
            (e.apply)(&mut b, &l, k.big_endian);
            let name = nifti_name(&format!("{stem}-{}", e.name.replace(['=', '.'], "_")), gz);
            if src == "anatomical.nii" {
                cases.push(case(
                    format!("inspect/{name}"),
                    &name,
                    b.clone(),
                    How::Inspect,
                    Expect::Any,
                ));
            }
            cases.push(case(
                format!("nifti/{name}"),
                &name,
                encode(b, gz),
                How::Convert,
                Expect::Any,
            ));
        }
        let mut rng = Rng::new(0x5EED_0000 + cases.len() as u64);
        for n in 0..12 {
            let mut b = raw.clone();
            let at = rng.below(l.header_len);
            let bit = rng.below(8);
            b[at] ^= 1 << bit;
            let name = nifti_name(&format!("{stem}-flip{n}-byte{at}-bit{bit}"), gz);
            cases.push(case(
                format!("nifti/{name}"),
                &name,
                encode(b, gz),
                How::Convert,
                Expect::Any,
            ));
        }
    }
    run_family("nifti-header", cases);
}

const TS_VALUES: [&str; 7] = [
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.5",
    "9.9.9",
    "",
];

#[test]
fn corrupt_dicom_header_values_vrs_and_bit_flips_are_handled() {
    let mut cases = Vec::new();
    let sources = dicom_sources();
    let keep = [
        "MR_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_RLE.dcm",
        "CT_small.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
    ];
    for (src, b) in sources
        .iter()
        .filter(|s| keep.iter().any(|k| s.0.ends_with(&format!("/{k}"))))
    {
        let stem = src.rsplit('/').next().unwrap().trim_end_matches(".dcm");
        let elems = dicom_elements(b);
        let be = elems.last().is_some_and(|e| e.big_endian);
        let mut push = |what: String, bytes: Vec<u8>| {
            let name = format!("{stem}-{what}.dcm");
            cases.push(case(
                format!("dicom/{name}"),
                &name,
                bytes,
                How::Convert,
                Expect::Any,
            ));
        };
        for (i, ts) in TS_VALUES.iter().enumerate() {
            let e = elems.iter().find(|e| e.is(2, 0x10)).unwrap();
            push(
                format!("ts{i}"),
                replace_value(b, &elems, e, ts.as_bytes(), 0),
            );
        }
        for (tag, label) in [
            (0x10u16, "rows"),
            (0x11, "cols"),
            (0x100, "bitsalloc"),
            (0x101, "bitsstored"),
            (0x102, "highbit"),
            (0x2, "spp"),
            (0x103, "pixrep"),
        ] {
            let values: &[u16] = if tag < 0x100 {
                &[0, 1, 0x8000, 0xFFFF]
            } else {
                &[0, 64, 0xFFFF]
            };
            for &v in values {
                if let Some(x) = overwrite(b, 0x28, tag, &us_bytes(v, be)) {
                    push(format!("{label}{v}"), x);
                }
            }
        }
        for v in ["0", "-1", "abc", ""] {
            push(
                format!("frames{}", v.replace('-', "m")),
                set_string(b, 0x28, 8, b"IS", v.as_bytes()),
            );
        }
        for v in ["MONOCHROME1", "RGB", "XX"] {
            push(
                format!("photometric-{}", v.replace(' ', "_")),
                set_string(b, 0x28, 4, b"CS", v.as_bytes()),
            );
        }
        // VRs of Rows and of the first dataset element (explicit VR files only).
        for target in [
            (0x28u16, 0x10u16),
            (elems
                .iter()
                .find(|e| e.group != 2)
                .map(|e| (e.group, e.element))
                .unwrap()),
        ] {
            if let Some(e) = elems
                .iter()
                .find(|e| e.is(target.0, target.1) && e.vr_at.is_some())
            {
                for vr in [b"SQ", b"XX", b"\0\0"] {
                    let mut x = b.clone();
                    x[e.vr_at.unwrap()..e.vr_at.unwrap() + 2].copy_from_slice(vr);
                    push(
                        format!(
                            "vr-{:04x}{:04x}-{}",
                            e.group,
                            e.element,
                            String::from_utf8_lossy(vr).replace('\0', "0")
                        ),
                        x,
                    );
                }
            }
        }
        // Lengths off by one (odd), every fifth element and PixelRepresentation.
        let with_len: Vec<&Elem> = elems.iter().filter(|e| e.value_len.is_some()).collect();
        for e in with_len
            .iter()
            .enumerate()
            .filter(|(i, e)| i % 5 == 0 || e.is(0x28, 0x103))
            .map(|(_, e)| *e)
        {
            let n = e.value_len.unwrap() as u32;
            for (label, v) in [("plus1", n + 1), ("minus1", n.saturating_sub(1))] {
                let mut x = b.clone();
                write_len(&mut x, e.len_at, e.len_width, v, e.big_endian);
                push(format!("len-{:04x}{:04x}-{label}", e.group, e.element), x);
            }
        }
        let end = elems
            .iter()
            .find(|e| e.is(0x7FE0, 0x10))
            .map(|e| e.at)
            .unwrap_or(b.len());
        let mut rng = Rng::new(0xD1C0_0000 + end as u64);
        for n in 0..12 {
            let mut x = b.clone();
            let at = 132 + rng.below(end - 132);
            let bit = rng.below(8);
            x[at] ^= 1 << bit;
            push(format!("flip{n}-byte{at}-bit{bit}"), x);
        }
        for n in 0..4 {
            let mut x = b.clone();
            let at = 132 + rng.below(end - 136);
            x[at..at + 4].copy_from_slice(&[0xFF; 4]);
            push(format!("ff{n}-byte{at}"), x);
        }
    }
    run_family("dicom-header", cases);
}

// ---------------------------------------------------------------------------------------------
// Lying lengths and counts

#[test]
fn corrupt_lying_lengths_and_counts_are_refused_before_allocating() {
    let mut cases = Vec::new();
    for (src, raw, gz) in nifti_sources()
        .into_iter()
        .filter(|s| s.0 != "example4d.nii.gz")
    {
        let k = nifti_kind(&raw);
        let l = nifti_layout(k.version);
        let stem = src.split('.').next().unwrap();
        for e in nifti_overwrites().into_iter().filter(|e| {
            e.name.starts_with("dims-")
                || e.name == "dim1=2147483648"
                || e.name.starts_with("vox_offset=1e12")
                || e.name.starts_with("vox_offset=2147483647")
        }) {
            let mut b = raw.clone();
            (e.apply)(&mut b, &l, k.big_endian);
            let name = nifti_name(&format!("{stem}-{}", e.name.replace(['=', '.'], "_")), gz);
            cases.push(case(
                format!("nifti/{name}"),
                &name,
                encode(b, gz),
                How::Convert,
                Expect::Reject,
            ));
        }
    }
    let sources = dicom_sources();
    for (src, b) in &sources {
        let stem = src.rsplit('/').next().unwrap().trim_end_matches(".dcm");
        let elems = dicom_elements(b);
        let be = elems.last().is_some_and(|e| e.big_endian);
        // Every top-level element's length claims 0xFFFFFFF0 (0xFFF0 for a 2-byte length).
        let step = if stem == "MR_small" { 1 } else { 8 };
        for e in elems.iter().filter(|e| e.value_len.is_some()).step_by(step) {
            let mut x = b.clone();
            write_len(
                &mut x,
                e.len_at,
                e.len_width,
                if e.len_width == 4 {
                    0xFFFF_FFF0
                } else {
                    0xFFF0
                },
                e.big_endian,
            );
            let name = format!("{stem}-len-{:04x}{:04x}-huge.dcm", e.group, e.element);
            cases.push(case(
                format!("dicom/{name}"),
                &name,
                x,
                How::Convert,
                Expect::Any,
            ));
        }
        for v in ["999999999", "4294967297", "2147483648"] {
            let name = format!("{stem}-frames{v}.dcm");
            cases.push(case(
                format!("dicom/{name}"),
                &name,
                set_string(b, 0x28, 8, b"IS", v.as_bytes()),
                How::Convert,
                Expect::Reject,
            ));
        }
        if let Some(x) = overwrite(b, 0x28, 0x10, &us_bytes(0xFFFF, be))
            .and_then(|x| overwrite(&x, 0x28, 0x11, &us_bytes(0xFFFF, be)))
        {
            let name = format!("{stem}-65535x65535.dcm");
            cases.push(case(
                format!("dicom/{name}"),
                &name,
                x,
                How::Convert,
                Expect::Reject,
            ));
        }
    }
    run_family("lying", cases);
}
