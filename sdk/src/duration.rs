//! Durations in parameters and pipeline settings: `2s`, `500ms`, `1.5m`, `1h`, or a number of
//! seconds. One parser for every place a duration is written (a stage `timeout`, the watch
//! source's `settle` and `stable_age`...), so they all accept the same forms.

use std::borrow::Cow;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

/// Parses `2s`, `500ms`, `1.5m`, `1h` or a bare number of seconds.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (examples: 2s, 500ms, 1.5m, 1h)"))?;
    let secs = match unit.trim() {
        "" | "s" => v,
        "ms" => v / 1000.0,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        u => return Err(format!("'{s}': unknown unit '{u}' (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("'{s}' is not a duration"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is too long a duration"))
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(v) => Duration::try_from_secs_f64(v)
                .map(Span)
                .map_err(|_| serde::de::Error::custom(format!("{v} is not a duration"))),
            Raw::Text(s) => parse(&s).map(Span).map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for Span {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // One schema for both forms: `pattern` only applies to strings and `minimum` only to
        // numbers, and a bad value gets one message naming the expected form.
        json_schema!({
            "description": "A duration: `2s`, `500ms`, `1.5m`, `1h`, or a number of seconds",
            "type": ["string", "number"],
            "minimum": 0,
            "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*(ms|s|m|min|h)?\\s*$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_errors() {
        assert_eq!(parse("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("3").unwrap(), Duration::from_secs(3));
        assert!(parse("2 days").unwrap_err().contains("unknown unit"));
        assert!(parse("soon").is_err());
        // Found by the corrupt suite: no panic on a value beyond what a Duration holds.
        assert!(
            parse("99999999999999999999h")
                .unwrap_err()
                .contains("too long")
        );
    }
}
