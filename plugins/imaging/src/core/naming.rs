//! Output file-name templates.
//!
//! A template such as `{stem}/{plane}/{stem}_{plane}_{index:03}.{ext}` is parsed
//! once and rendered for every slice. Tokens:
//!
//! | token      | value                                                          |
//! |------------|----------------------------------------------------------------|
//! | `{stem}`   | source file name without `.nii`, `.nii.gz`, `.dcm` ([`file_stem`]) |
//! | `{plane}`  | `axial`, `coronal`, `sagittal`                                  |
//! | `{index}`  | slice index, `{index:03}` zero-pads to 3 digits                |
//! | `{frame}`  | frame index (0 for 3D volumes), `{frame:02}` zero-pads         |
//! | `{ext}`    | file extension without the dot                                 |
//! | `{series}` | series identifier (empty when absent)                          |
//! | `{key}`    | caller-defined key (empty when absent)                         |
//!
//! `{{` and `}}` produce literal braces. The template may contain `/` to create
//! sub-folders; it may not be absolute, contain `\`, `.`/`..` components or
//! control characters. Token values go through the SDK's one sanitiser,
//! [`mindscan_sdk::naming::sanitize_component`] (no separators, no `..`, no
//! leading dot, no control characters, at most 120 bytes); an empty value stays
//! empty (an empty `{series}/` folder is dropped). Rendered paths whose components
//! are `.`/`..` or start with a dot (hidden files and folders), empty file names,
//! components over 255 bytes or paths over 1024 bytes are rejected.

use std::fmt;

use mindscan_sdk::naming::sanitize_component;

/// Names of the supported tokens.
pub const KNOWN_TOKENS: &[&str] = &["stem", "plane", "index", "frame", "ext", "series", "key"];

const MAX_COMPONENT_BYTES: usize = 255;
const MAX_PATH_BYTES: usize = 1024;

/// Template or rendering errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamingError {
    /// `{name}` is not a known token.
    UnknownToken { token: String },
    /// Malformed template (unbalanced braces, bad padding, unsafe path, ...).
    BadTemplate(String),
    /// The rendered name is unusable.
    BadName(String),
}

impl fmt::Display for NamingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamingError::UnknownToken { token } => write!(
                f,
                "unknown token {{{token}}} in file-name template; known tokens: {}",
                KNOWN_TOKENS
                    .iter()
                    .map(|t| format!("{{{t}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            NamingError::BadTemplate(m) => write!(f, "bad file-name template: {m}"),
            NamingError::BadName(m) => write!(f, "bad rendered file name: {m}"),
        }
    }
}

impl std::error::Error for NamingError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Stem,
    Plane,
    Index,
    Frame,
    Ext,
    Series,
    Key,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Tok { token: Token, pad: usize },
}

/// Values for one rendered name.
#[derive(Debug, Clone, Copy, Default)]
pub struct NameFields<'a> {
    pub stem: &'a str,
    pub plane: &'a str,
    pub index: usize,
    /// `None` renders as 0.
    pub frame: Option<usize>,
    /// Extension, with or without a leading dot.
    pub ext: &'a str,
    pub series: Option<&'a str>,
    pub key: Option<&'a str>,
}

/// A parsed file-name template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate {
    parts: Vec<Part>,
}

fn parse_token(body: &str) -> Result<Part, NamingError> {
    let (name, spec) = match body.split_once(':') {
        Some((n, s)) => (n, Some(s)),
        None => (body, None),
    };
    let token = match name {
        "stem" => Token::Stem,
        "plane" => Token::Plane,
        "index" => Token::Index,
        "frame" => Token::Frame,
        "ext" => Token::Ext,
        "series" => Token::Series,
        "key" => Token::Key,
        _ => {
            return Err(NamingError::UnknownToken {
                token: name.to_string(),
            });
        }
    };
    let pad = match spec {
        None => 0,
        Some(s) => {
            if !matches!(token, Token::Index | Token::Frame) {
                return Err(NamingError::BadTemplate(format!(
                    "padding is only allowed for {{index}} and {{frame}}, not {{{body}}}"
                )));
            }
            let digits = s.strip_prefix('0').unwrap_or(s);
            match digits.parse::<usize>() {
                Ok(w) if w <= 12 && !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => w,
                _ => {
                    return Err(NamingError::BadTemplate(format!(
                        "bad padding in {{{body}}}; use e.g. {{{name}:03}}"
                    )));
                }
            }
        }
    };
    Ok(Part::Tok { token, pad })
}

impl NameTemplate {
    /// Parses and validates a template.
    pub fn parse(template: &str) -> Result<Self, NamingError> {
        if template.is_empty() {
            return Err(NamingError::BadTemplate("empty template".into()));
        }
        if template.starts_with('/') || template.contains('\\') {
            return Err(NamingError::BadTemplate(
                "template must be a relative path using '/' separators".into(),
            ));
        }
        if template.chars().any(char::is_control) {
            return Err(NamingError::BadTemplate(
                "control character in template".into(),
            ));
        }
        if template.split('/').any(|c| c == "." || c == "..") {
            return Err(NamingError::BadTemplate(
                "'.' or '..' path component".into(),
            ));
        }
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = template.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let rest = &template[i + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(NamingError::BadTemplate("unclosed '{'".into()));
                    };
                    let body = &rest[..end];
                    if body.contains('{') {
                        return Err(NamingError::BadTemplate("nested '{'".into()));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(parse_token(body)?);
                    while let Some((j, _)) = chars.peek() {
                        if *j <= i + 1 + end {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                '}' => return Err(NamingError::BadTemplate("unmatched '}'".into())),
                _ => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(NameTemplate { parts })
    }

    /// Renders a relative path (with `/` separators) for `fields`.
    pub fn render(&self, fields: &NameFields<'_>) -> Result<String, NamingError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Tok { token, pad } => match token {
                    Token::Index => out.push_str(&format!("{:0pad$}", fields.index, pad = *pad)),
                    Token::Frame => {
                        out.push_str(&format!("{:0pad$}", fields.frame.unwrap_or(0), pad = *pad))
                    }
                    Token::Stem => out.push_str(&sanitize_value(fields.stem)),
                    Token::Plane => out.push_str(&sanitize_value(fields.plane)),
                    Token::Ext => out.push_str(&sanitize_value(fields.ext.trim_start_matches('.'))),
                    Token::Series => out.push_str(&sanitize_value(fields.series.unwrap_or(""))),
                    Token::Key => out.push_str(&sanitize_value(fields.key.unwrap_or(""))),
                },
            }
        }
        // Drop empty components (e.g. from an empty {series}/ folder).
        let comps: Vec<&str> = out.split('/').filter(|c| !c.is_empty()).collect();
        if out.ends_with('/') || comps.is_empty() {
            return Err(NamingError::BadName(format!(
                "'{out}' has an empty file name"
            )));
        }
        for c in &comps {
            if *c == "." || *c == ".." {
                return Err(NamingError::BadName(format!(
                    "'{out}' has a '{c}' component"
                )));
            }
            if c.starts_with('.') {
                return Err(NamingError::BadName(format!(
                    "'{out}' has a hidden component '{c}' (the template's text starts it with a dot)"
                )));
            }
            if c.len() > MAX_COMPONENT_BYTES {
                return Err(NamingError::BadName(format!(
                    "a component of '{out}' is longer than {MAX_COMPONENT_BYTES} bytes"
                )));
            }
        }
        let joined = comps.join("/");
        if joined.len() > MAX_PATH_BYTES {
            return Err(NamingError::BadName(format!(
                "path longer than {MAX_PATH_BYTES} bytes"
            )));
        }
        Ok(joined)
    }
}

/// Makes a token value safe to embed in one path component (the SDK's sanitiser; an empty
/// value stays empty).
pub fn sanitize_value(v: &str) -> String {
    if v.is_empty() {
        String::new()
    } else {
        sanitize_component(v)
    }
}

/// File name of `path` without directories and without a `.nii.gz`, `.nii`,
/// `.dcm` or `.dicom` suffix (case-insensitive).
pub fn file_stem(path: &str) -> String {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    let lower = name.to_ascii_lowercase();
    for suffix in [".nii.gz", ".nii", ".dcm", ".dicom"] {
        if lower.ends_with(suffix) && lower.len() > suffix.len() {
            return name[..name.len() - suffix.len()].to_string();
        }
    }
    name.to_string()
}
