//! Malformed pipelines for `validate`, and `on_error: skip` over folders mixing good and bad
//! inputs.

use super::*;

// ---------------------------------------------------------------------------------------------
// Malformed pipelines for `validate`

const PIPELINE: &str = "pipeline: t\nseed: 42\nstages:\n  - id: read\n    use: nifti.read\n    on_error: skip\n    \
                        params: { paths: [in] }\n  - id: save\n    use: nifti.write\n    inputs: [read]\n    \
                        workers: 2\n    queue: 16\n    timeout: 60s\n    params: { out: out, format: nii }\n";

/// A billion-laughs document: `levels` anchors, each a list of ten of the previous one.
fn alias_bomb(levels: usize, at: &str) -> String {
    let mut s = String::from("a0: &a0 [\"lol\"]\n");
    for i in 1..=levels {
        let prev = format!("*a{}", i - 1);
        s.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    format!("{s}pipeline: t\n{at}: *a{levels}\nstages: []\n")
}

#[test]
fn corrupt_malformed_pipelines_are_rejected_by_validate_with_a_location() {
    let mut cases = Vec::new();
    let mut push = |id: String, text: Vec<u8>| {
        cases.push(case(
            format!("yaml/{id}"),
            "p.yaml",
            text,
            How::Validate,
            Expect::Any,
        ));
    };
    for at in (0..PIPELINE.len()).step_by(9).chain([PIPELINE.len() - 1]) {
        push(format!("cut{at}"), PIPELINE.as_bytes()[..at].to_vec());
    }
    let swaps: &[(&str, &str)] = &[
        ("seed: 42", "seed: forty-two"),
        ("seed: 42", "seed: 1e400"),
        ("seed: 42", "seed: 18446744073709551616"),
        ("seed: 42", "seed: -1"),
        ("seed: 42", "seed: [1, 2]"),
        ("workers: 2", "workers: 99999999999999999999"),
        ("workers: 2", "workers: -1"),
        ("workers: 2", "workers: 2.5"),
        ("workers: 2", "workers: \"2\""),
        ("workers: 2", "workers: .nan"),
        ("queue: 16", "queue: 1e308"),
        ("queue: 16", "queue: 0x7fffffffffffffff"),
        ("timeout: 60s", "timeout: 1e308s"),
        ("timeout: 60s", "timeout: 99999999999999999999h"),
        ("timeout: 60s", "timeout: -5s"),
        ("timeout: 60s", "timeout: .inf"),
        ("paths: [in]", "paths: in"),
        ("paths: [in]", "paths: {a: b}"),
        ("paths: [in]", "paths: [~]"),
        ("paths: [in]", "paths: [\"\\0\"]"),
        ("params: { out: out, format: nii }", "params: [out]"),
        (
            "params: { out: out, format: nii }",
            "params: { out: 5, format: nii }",
        ),
        ("inputs: [read]", "inputs: read"),
        ("inputs: [read]", "inputs: [save]"),
        ("inputs: [read]", "inputs: [read, read, read]"),
        ("stages:", "stages: 5\nx:"),
        ("on_error: skip", "on_error: yes"),
        ("on_error: skip", "on_error: [skip]"),
        ("pipeline: t", "pipeline: t\npipeline: u"),
        ("pipeline: t", "pipeline: !!binary aGVsbG8="),
        ("pipeline: t", "pipeline: !custom t"),
        ("pipeline: t", "base: &b {id: x}\npipeline: t"),
        ("pipeline: t", "pipeline: t\nplugins: [/dev/null]"),
        ("pipeline: t", "pipeline: t\nplugins: [in]"),
        ("pipeline: t", "pipeline: t\nplugins: [p.yaml]"),
        (
            "pipeline: t",
            "pipeline: t\nplugins: [\"../../../../../../../../../../nonexistent.so\"]",
        ),
        ("  - id: read", "  - <<: {id: read}\n    id: read2"),
        ("  - id: read", "\t- id: read"),
    ];
    for (i, (from, to)) in swaps.iter().enumerate() {
        push(
            format!("swap{i}-{}", to.escape_debug()),
            PIPELINE.replacen(from, to, 1).into_bytes(),
        );
    }
    push("alias-bomb-stages".into(), alias_bomb(9, "x").into_bytes());
    push("alias-bomb-seed".into(), alias_bomb(9, "seed").into_bytes());
    push(
        "alias-bomb-paths".into(),
        PIPELINE
            .replace("params: { paths: [in] }", "params: { paths: *a9 }")
            .replacen(
                "pipeline: t\n",
                &alias_bomb(9, "y").replace("stages: []\n", ""),
                1,
            )
            .into_bytes(),
    );
    push(
        "deep-flow".into(),
        format!(
            "pipeline: t\nstages: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
        .into_bytes(),
    );
    push("deep-block".into(), {
        let mut s = String::from("pipeline: t\nstages:\n");
        for d in 0..5000 {
            s.push_str(&format!("{}- \n", " ".repeat(d * 2 + 2)));
        }
        s.into_bytes()
    });
    push(
        "huge-string".into(),
        format!("pipeline: \"{}\"\nstages: []\n", "x".repeat(8 << 20)).into_bytes(),
    );
    push("empty".into(), vec![]);
    push("nul".into(), b"pipeline: t\0\nstages: []\n".to_vec());
    push(
        "not-utf8".into(),
        b"pipeline: \xff\xfe\nstages: []\n".to_vec(),
    );
    push(
        "bom".into(),
        [&b"\xef\xbb\xbf"[..], PIPELINE.as_bytes()].concat(),
    );
    push("scalar".into(), b"42\n".to_vec());
    push("null".into(), b"~\n".to_vec());
    push(
        "documents".into(),
        format!("{PIPELINE}---\n{PIPELINE}").into_bytes(),
    );
    push(
        "self-alias".into(),
        b"pipeline: &a [*a]\nstages: []\n".to_vec(),
    );
    push(
        "undefined-alias".into(),
        b"pipeline: *nope\nstages: []\n".to_vec(),
    );
    push("crlf".into(), PIPELINE.replace('\n', "\r\n").into_bytes());
    push("cr-only".into(), PIPELINE.replace('\n', "\r").into_bytes());
    push("many-stages".into(), {
        let mut s = String::from("pipeline: t\nstages:\n");
        for i in 0..20_000 {
            s.push_str(&format!(
                "  - {{id: s{i}, use: nifti.write, inputs: [s{}], params: {{out: out}}}}\n",
                i + 1
            ));
        }
        s.into_bytes()
    });
    run_family("yaml", cases);
}

// ---------------------------------------------------------------------------------------------
// on_error: skip over folders mixing good and bad inputs

#[test]
fn corrupt_inputs_among_good_ones_are_listed_and_the_rest_completes() {
    let anat = read("nifti/anatomical.nii");
    let mut nifti_files = vec![
        (b"anatomical.nii".to_vec(), anat.clone()),
        (b"functional.nii".to_vec(), read("nifti/functional.nii")),
    ];
    let k = nifti_kind(&anat);
    let l = nifti_layout(1);
    for (i, e) in nifti_overwrites()
        .into_iter()
        .filter(|e| {
            [
                "datatype=9999",
                "datatype=0",
                "dims-all3",
                "magic=xxxx",
                "sizeof_hdr=0",
                "vox_offset=1e30",
            ]
            .contains(&e.name.as_str())
        })
        .enumerate()
    {
        let mut b = anat.clone();
        (e.apply)(&mut b, &l, k.big_endian);
        nifti_files.push((format!("bad{i}.nii").into_bytes(), b));
    }
    nifti_files.push((b"bad-cut.nii".to_vec(), anat[..20_000].to_vec()));
    nifti_files.push((b"bad-gzcut.nii.gz".to_vec(), gzip(&anat)[..3000].to_vec()));
    nifti_files.push((b"bad-empty.nii".to_vec(), vec![]));
    let mr = read("dicom/single/pydicom/MR_small.dcm");
    let ct = read("dicom/single/pydicom/CT_small.dcm");
    let ge = read(
        "dicom/series/GE_MR750_EPI_fMRI_mr_0004/DICOM/axial_epi_fmri_interleaved_i_to_s-00001.dcm",
    );
    let mut huge_pixels = ge.clone();
    let e = dicom_elements(&ge)
        .into_iter()
        .find(|e| e.is(0x7FE0, 0x10))
        .unwrap();
    write_len(&mut huge_pixels, e.len_at, e.len_width, 0xFFFF_FFF0, false);
    let dicom_files = vec![
        (b"MR_small.dcm".to_vec(), mr.clone()),
        (b"CT_small.dcm".to_vec(), ct.clone()),
        (b"bad-cut.dcm".to_vec(), ct[..2000].to_vec()),
        (b"lying-pixel-length.dcm".to_vec(), huge_pixels),
        (b"bad-nest.dcm".to_vec(), deep_nesting(10_000, true, false)),
        (
            b"bad-frames.dcm".to_vec(),
            set_string(&mr, 0x28, 8, b"IS", b"999999999"),
        ),
    ];
    let cases = vec![
        Case {
            id: "mixed/nifti-run".into(),
            files: nifti_files.clone(),
            links: vec![],
            how: How::Run(skip_pipeline("nifti.read")),
            expect: Expect::Mixed(&["anatomical", "functional"]),
        },
        Case {
            id: "mixed/nifti-convert".into(),
            files: nifti_files,
            links: vec![],
            how: How::ConvertFolder(vec!["--format", "nifti", "-z", "n"]),
            expect: Expect::Mixed(&["anatomical", "functional"]),
        },
        Case {
            id: "mixed/dicom-run".into(),
            files: dicom_files.clone(),
            links: vec![],
            how: How::Run(skip_pipeline("dicom.read")),
            expect: Expect::Mixed(&[".nii"]),
        },
        Case {
            id: "mixed/dicom-convert".into(),
            files: dicom_files,
            links: vec![],
            how: How::ConvertFolder(vec!["--format", "png"]),
            expect: Expect::Mixed(&[".png"]),
        },
    ];
    run_family("mixed-skip", cases);
}
