//! `intstr.GetScaledValueFromIntOrPercent`.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntStrError {
    #[error(
        "invalid value for IntOrString: invalid value {0:?}: expected an integer or a percentage"
    )]
    Invalid(String),
}

/// Resolves `v` against `total`, rounding a percentage up or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, IntStrError> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| IntStrError::Invalid(s.clone()))?;
            let prod = pct * total as i64;
            let v = if round_up {
                (prod + 99).div_euclid(100)
            } else {
                prod.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let s = |x: &str| IntOrString::String(x.into());
        let cases = [
            (IntOrString::Int(3), 10, true, Ok(3)),
            (s("25%"), 10, true, Ok(3)),
            (s("25%"), 10, false, Ok(2)),
            (s("100%"), 7, false, Ok(7)),
            (s("0%"), 7, true, Ok(0)),
            (s("x"), 7, true, Err(IntStrError::Invalid("x".into()))),
        ];
        for (v, total, up, want) in cases {
            assert_eq!(scaled_value(&v, total, up), want, "{v:?} of {total}");
        }
    }
}
