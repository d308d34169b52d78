//! Output names built from input names: the one sanitiser every writing stage uses.

/// Longest component [`sanitize_component`] returns, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 120;

/// Makes `value` (an input's stem, a series name, an item key...) safe as one path component
/// of an output name, on Linux, macOS and Windows:
///
/// * `/`, `\`, control characters and `<>:"|?*` become `_`, so it is one component;
/// * surrounding whitespace goes, and every run of two or more dots becomes `_`, so there is
///   no `..` anywhere (`..\..\NAME` gives `____NAME`);
/// * a leading dot becomes `_`, so it is never a hidden file or folder (`.nii` gives `_nii`);
/// * trailing dots go (Windows drops them);
/// * it is cut to [`MAX_COMPONENT_BYTES`] on a character boundary;
/// * an empty result is `_`.
///
/// Windows' reserved device names (`CON`, `NUL`...) are left as they are.
pub fn sanitize_component(value: &str) -> String {
    let mapped: String = value
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let mut out = String::with_capacity(mapped.len());
    let mut dots = 0;
    for c in mapped.trim().chars() {
        if c == '.' {
            dots += 1;
            continue;
        }
        push_dots(&mut out, dots);
        dots = 0;
        out.push(c);
    }
    // Trailing dots are dropped (a trailing run of several as well).
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    if out.len() > MAX_COMPONENT_BYTES {
        let mut cut = MAX_COMPONENT_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    let kept = out
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
        .len();
    out.truncate(kept);
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// One dot stays a dot; a run of several becomes `_`.
fn push_dots(out: &mut String, dots: usize) {
    match dots {
        0 => {}
        1 => out.push('.'),
        _ => out.push('_'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_safe(input: &str) {
        let s = sanitize_component(input);
        assert!(!s.is_empty(), "{input:?}");
        assert!(!s.starts_with('.'), "{input:?} -> {s:?}");
        assert!(!s.contains(['/', '\\']), "{input:?} -> {s:?}");
        assert!(!s.contains(".."), "{input:?} -> {s:?}");
        assert!(!s.chars().any(char::is_control), "{input:?} -> {s:?}");
        assert!(
            s.len() <= MAX_COMPONENT_BYTES,
            "{input:?} -> {} bytes",
            s.len()
        );
        assert!(!s.ends_with(['.', ' ']), "{input:?} -> {s:?}");
        assert_eq!(
            sanitize_component(&s),
            s,
            "sanitising is idempotent: {input:?}"
        );
    }

    #[test]
    fn a_sanitised_component_is_never_hidden_empty_or_a_path() {
        for input in [
            "",
            ".",
            "..",
            "...",
            ".nii",
            ".nii.gz",
            "..\\..\\NAME",
            "../../etc/passwd",
            "a/b\\c",
            "x\u{0}y\tz\u{7f}w\u{85}",
            " . ",
            " .hidden",
            "name.",
            "name. . .",
            "a..b",
            "C:\\dicom\\IM1",
            "<>:\"|?*",
            &"x".repeat(1000),
            &"é".repeat(200),
            &format!("{}.", "y".repeat(119)),
        ] {
            assert_safe(input);
        }
    }

    #[test]
    fn ordinary_names_are_kept_and_unsafe_ones_change_as_documented() {
        for kept in [
            "sub-01_T1w",
            "t1.v2",
            "EPI_PE=AP_3",
            "Ünïcødé",
            "CON",
            "a b",
        ] {
            assert_eq!(sanitize_component(kept), kept);
        }
        assert_eq!(sanitize_component(".nii"), "_nii");
        assert_eq!(sanitize_component(".nii.gz"), "_nii.gz");
        assert_eq!(sanitize_component("..\\..\\NAME"), "____NAME");
        assert_eq!(sanitize_component("a..b"), "a_b");
        assert_eq!(sanitize_component("name."), "name");
        assert_eq!(sanitize_component("..."), "_");
        assert_eq!(sanitize_component(""), "_");
        assert_eq!(sanitize_component("a\\b\u{0}c\td:e"), "a_b_c_d_e");
        let cut = sanitize_component(&"é".repeat(200));
        assert!(cut.len() <= MAX_COMPONENT_BYTES && cut.chars().all(|c| c == 'é'));
    }
}
