//! Inputs built to exhaust or escape: decompression bombs, deep DICOM nesting, symlink loops,
//! hostile file names and tag values.

use super::*;

// ---------------------------------------------------------------------------------------------
// Decompression bombs

/// A NIfTI-1 little-endian header (u8 voxels, 1 mm) claiming `dims`.
fn header(dims: [i16; 3], datatype: i16, bitpix: i16) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    for (i, d) in [3i16, dims[0], dims[1], dims[2], 1, 1, 1, 1]
        .iter()
        .enumerate()
    {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&datatype.to_le_bytes());
    h[72..74].copy_from_slice(&bitpix.to_le_bytes());
    for i in 0..4 {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    h
}

#[test]
fn corrupt_decompression_bombs_stay_within_the_memory_budget() {
    let budget = "pipeline: t\nstages:\n  - {id: read, use: nifti.read, on_error: skip, params: {paths: [in], max_bytes: 268435456}}\n  \
                  - {id: save, use: nifti.write, inputs: [read], params: {out: out, format: nii}}\n";
    let mut cases = vec![
        // Claims 32767^3 bytes (35 TB), holds a kilobyte of zeros.
        case(
            "bomb/35tb",
            "claims-35tb.nii.gz",
            gzip_with_zeros(&header([32767; 3], 2, 8), 1024),
            How::Convert,
            Expect::Reject,
        ),
        // Claims 8 TB of float64, holds 1 MiB of zeros.
        case(
            "bomb/float64",
            "claims-float64.nii.gz",
            gzip_with_zeros(&header([32767, 32767, 1000], 64, 64), 1 << 20),
            How::Convert,
            Expect::Reject,
        ),
        // 1 GiB of real zeros in 1 MiB of gzip, over a 256 MiB budget.
        case(
            "bomb/1gib-zeros",
            "inflates-1gib.nii.gz",
            gzip_with_zeros(&header([1024, 1024, 1024], 2, 8), 1 << 30),
            How::Run(budget.into()),
            Expect::Reject,
        ),
        // 2.5 GiB claim over the default 2 GiB budget, 4 MiB of zeros.
        case(
            "bomb/2.5gib-default-budget",
            "claims-2_5gib.nii.gz",
            gzip_with_zeros(&header([1024, 1024, 2560], 2, 8), 4 << 20),
            How::Convert,
            Expect::Reject,
        ),
        // A sound 64^3 volume followed by 512 MiB of zeros the reader has no reason to inflate.
        case(
            "bomb/trailing-zeros",
            "trailing-512mib.nii.gz",
            gzip_with_zeros(&header([64, 64, 64], 2, 8), (64 * 64 * 64) + (512 << 20)),
            How::Convert,
            Expect::Any,
        ),
    ];
    // 512 gzip members of 1 MiB of zeros each, concatenated (a multi-member stream).
    let member = gzip_with_zeros(&[], 1 << 20);
    let mut multi = gzip(&header([1024, 1024, 512], 2, 8));
    for _ in 0..512 {
        multi.extend(&member);
    }
    cases.push(case(
        "bomb/multi-member",
        "multi-member.nii.gz",
        multi,
        How::Run(budget.into()),
        Expect::Reject,
    ));
    // DICOM: a deflated dataset that inflates to 256 MiB of zeros inside one element.
    let mut deflated = dicom_meta("1.2.840.10008.1.2.1.99");
    let mut body = explicit_le(8, 0x60, b"CS", b"MR");
    body.extend([0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
    body.extend((256u32 << 20).to_le_bytes());
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &body).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        std::io::Write::write_all(&mut enc, &zeros).unwrap();
    }
    deflated.extend(enc.finish().unwrap());
    cases.push(case(
        "bomb/dicom-deflate",
        "deflate-bomb.dcm",
        deflated,
        How::Convert,
        Expect::Reject,
    ));
    // The NIfTI bombs again through `inspect` (header only: must answer at once).
    let inspect: Vec<Case> = cases
        .iter()
        .filter(|c| c.files[0].0.ends_with(b".nii.gz"))
        .map(|c| Case {
            id: format!("inspect/{}", c.id),
            files: c.files.clone(),
            links: vec![],
            how: How::Inspect,
            expect: Expect::Any,
        })
        .collect();
    cases.extend(inspect);
    run_family("bombs", cases);
}

// ---------------------------------------------------------------------------------------------
// Deep nesting, symlink loops, hostile names and tag values

#[test]
fn corrupt_deep_dicom_nesting_is_bounded() {
    let mut cases = Vec::new();
    for (depth, closed, defined) in [
        (64, true, false),
        (65, true, false),
        (1000, true, false),
        (10_000, true, false),
        (10_000, false, false),
        (100_000, true, false),
        (10_000, true, true),
        (100_000, false, true),
    ] {
        let name = format!(
            "nest{depth}-{}-{}.dcm",
            if closed { "closed" } else { "open" },
            if defined { "defined" } else { "undefined" }
        );
        cases.push(case(
            format!("nest/{name}"),
            &name,
            deep_nesting(depth, closed, defined),
            How::Convert,
            Expect::Any,
        ));
        cases.push(case(
            format!("nest-inspect/{name}"),
            &name,
            deep_nesting(depth, closed, defined),
            How::Inspect,
            Expect::Any,
        ));
    }
    // The same 10,000 levels spliced into a real file right after its meta group.
    let b = read("dicom/single/pydicom/MR_small.dcm");
    let elems = dicom_elements(&b);
    let meta_end = elems
        .iter()
        .filter(|e| e.group == 2)
        .map(|e| e.value_at + e.value_len.unwrap())
        .max()
        .unwrap();
    let deep = deep_nesting(10_000, true, false);
    let inner_start =
        dicom_meta("1.2.840.10008.1.2.1").len() + explicit_le(8, 0x60, b"CS", b"MR").len();
    let nest_len = 10_000 * 36;
    let mut x = b[..meta_end].to_vec();
    x.extend(&deep[inner_start..inner_start + nest_len]);
    x.extend(&b[meta_end..]);
    cases.push(case(
        "nest/MR_small-10000",
        "MR_small-nest10000.dcm",
        x,
        How::Convert,
        Expect::Any,
    ));
    run_family("nesting", cases);
}

#[test]
fn corrupt_symlink_loops_in_the_input_folder_end() {
    let links: Vec<(&'static str, &'static str)> = vec![
        ("up", ".."),
        ("self", "."),
        ("loop_a", "loop_b"),
        ("loop_b", "loop_a"),
        ("dangling", "nowhere"),
        ("deep", "self/self/self/up/in"),
    ];
    let nifti = |how: How| Case {
        id: String::new(),
        files: vec![
            (b"anatomical.nii".to_vec(), read("nifti/anatomical.nii")),
            (b"functional.nii".to_vec(), read("nifti/functional.nii")),
        ],
        links: links.clone(),
        how,
        expect: Expect::Ok(&["anatomical", "functional"]),
    };
    let dicom = |how: How| Case {
        id: String::new(),
        files: vec![
            (
                b"MR_small.dcm".to_vec(),
                read("dicom/single/pydicom/MR_small.dcm"),
            ),
            (
                b"CT_small.dcm".to_vec(),
                read("dicom/single/pydicom/CT_small.dcm"),
            ),
        ],
        links: links.clone(),
        how,
        expect: Expect::Ok(&[".nii"]),
    };
    let glob = "pipeline: t\nstages:\n  - {id: read, use: nifti.read, params: {paths: [\"in/**/*.nii\"]}}\n  \
                - {id: save, use: nifti.write, inputs: [read], params: {out: out, format: nii}}\n";
    let cases = vec![
        Case {
            id: "links/nifti-convert".into(),
            ..nifti(How::ConvertFolder(vec!["--format", "nifti", "-z", "n"]))
        },
        Case {
            id: "links/nifti-run".into(),
            ..nifti(How::Run(skip_pipeline("nifti.read")))
        },
        Case {
            id: "links/nifti-glob".into(),
            ..nifti(How::Run(glob.into()))
        },
        Case {
            id: "links/dicom-convert".into(),
            ..dicom(How::ConvertFolder(vec!["--format", "nifti", "-z", "n"]))
        },
        Case {
            id: "links/dicom-run".into(),
            ..dicom(How::Run(skip_pipeline("dicom.read")))
        },
    ];
    run_family("symlinks", cases);
}

/// File names no one should have to handle, each read alone and then all in one folder.
const HOSTILE_NAMES: [&[u8]; 12] = [
    b".hidden.nii",
    b"..nii",
    b"...nii",
    b"back\\slash.nii",
    b"..\\..\\evil.nii",
    b"new\nline.nii",
    b"-dash.nii",
    b"%s%n%x.nii",
    b"tab\t.nii",
    b"not-utf8-\xff\xfe.nii",
    b" lead space.nii",
    b"\x1b[31mred.nii",
];

#[test]
fn corrupt_hostile_names_and_tag_values_stay_in_the_output_folder() {
    let good = read("nifti/functional.nii");
    let mut cases = Vec::new();
    let mut all = Case {
        id: String::new(),
        files: vec![],
        links: vec![],
        how: How::Convert,
        expect: Expect::Any,
    };
    let long = format!("{}.nii", "L".repeat(250));
    for name in HOSTILE_NAMES
        .iter()
        .map(|n| n.to_vec())
        .chain([long.into_bytes()])
    {
        let id = format!("names/{}", String::from_utf8_lossy(&name).escape_debug());
        // A name that is not UTF-8 cannot travel in a pipeline's `paths:` (its folder can).
        let expect = if std::str::from_utf8(&name).is_ok() {
            Expect::Any
        } else {
            Expect::Usage
        };
        cases.push(Case {
            id,
            files: vec![(name.clone(), good.clone())],
            links: vec![],
            how: How::Convert,
            expect,
        });
        all.files.push((name, good.clone()));
    }
    for fmt in ["png", "nifti"] {
        cases.push(Case {
            id: format!("names/all-in-one-folder-{fmt}"),
            files: all.files.clone(),
            links: vec![],
            how: How::ConvertFolder(vec!["--format", fmt]),
            expect: Expect::Any,
        });
    }
    let mr = read("dicom/single/pydicom/MR_small.dcm");
    let values: [&[u8]; 12] = [
        b"../../escape",
        b"../../../../../../tmp/escape",
        b"/etc/escape",
        b"a/b/c",
        b"..",
        b".",
        b"",
        b"ctl\x01\x07\x1b[31m",
        b"new\nline",
        b"back\\slash",
        b"%s%p%d",
        b"-rf",
    ];
    let long_value = vec![b'V'; 300];
    for (i, v) in values.iter().copied().chain([&long_value[..]]).enumerate() {
        let x = set_string(
            &set_string(&mr, 0x18, 0x1030, b"LO", v),
            8,
            0x103E,
            b"LO",
            v,
        );
        let x = set_string(
            &x,
            0x20,
            0x11,
            b"IS",
            if i % 2 == 0 { b"../1" } else { b"7" },
        );
        for (fmt, template) in [
            ("nifti", "%p_%s"),
            ("png", "%d/%p"),
            ("nifti", "%d_%p_%s_%m"),
        ] {
            cases.push(Case {
                id: format!("tags/{i}-{fmt}-{template}"),
                files: vec![(format!("tag{i}.dcm").into_bytes(), x.clone())],
                links: vec![],
                how: How::ConvertFolder(vec!["--format", fmt, "-f", template]),
                expect: Expect::Any,
            });
        }
    }
    run_family("names", cases);
}
