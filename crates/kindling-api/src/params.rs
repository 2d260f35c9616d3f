//! Query and flag values shared by the API and the CLI.

use std::time::Duration;

/// A bad request parameter: which one, what was given, what is expected.
#[derive(Debug, PartialEq, Eq)]
pub struct ParamError {
    pub param: String,
    pub value: String,
    pub expected: String,
}

impl ParamError {
    pub fn new(param: &str, value: &str, expected: &str) -> ParamError {
        ParamError { param: param.into(), value: value.chars().take(64).collect(), expected: expected.into() }
    }
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad value {:?} for parameter `{}`: expected {}", self.value, self.param, self.expected)
    }
}

impl std::error::Error for ParamError {}

pub fn parse_bool(param: &str, v: &str) -> Result<bool, ParamError> {
    match v {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ParamError::new(param, v, "true or false")),
    }
}

/// `500ms`, `5s`, `2m`, `1h`, `7d`, `250us`, `10ns`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration (use e.g. 500ms, 5s, 2m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("'{s}' has an unknown unit '{unit}' (use ns, us, ms, s, m or h)")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = parse_bool("slow", "maybe").unwrap_err();
        assert_eq!(e.to_string(), "bad value \"maybe\" for parameter `slow`: expected true or false");
    }
}
