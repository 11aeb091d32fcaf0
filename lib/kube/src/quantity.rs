//! Resource quantities (`100m`, `1.5Gi`, `129e6`): parsing, arithmetic,
//! comparison and Kubernetes' canonical string form
//! (`k8s.io/apimachinery/pkg/api/resource`). `k8s-openapi`'s `Quantity` is
//! only a string; this is the number behind it.
//!
//! Values are held exactly as an integer count of nano-units (10^-9), the
//! finest precision Kubernetes keeps; finer inputs are rounded up, as
//! Kubernetes does.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

const NANO: i128 = 1_000_000_000;

/// How a quantity prints: the suffix family it was written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `Ki`, `Mi`, … (powers of 1024).
    BinarySI,
    /// `n`, `u`, `m`, ``, `k`, `M`, … (powers of 1000).
    DecimalSI,
    /// `e3`, `E6`, … (powers of 10).
    DecimalExponent,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    FormatWrong,
    #[error("unable to parse quantity's suffix")]
    Suffix,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
}

/// An exact resource quantity.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Default for Quantity {
    fn default() -> Self {
        Self::zero()
    }
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

/// Divides rounding away from zero (Kubernetes' "round up").
fn div_round_up(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if n > 0 {
        q + 1
    } else {
        q - 1
    }
}

impl Quantity {
    pub fn zero() -> Self {
        Self {
            nanos: 0,
            format: Format::DecimalSI,
        }
    }

    /// An integer number of units (`3` CPUs, `1073741824` bytes).
    pub fn from_int(v: i64, format: Format) -> Self {
        Self {
            nanos: i128::from(v) * NANO,
            format,
        }
    }

    /// Thousandths of a unit (`500` → `500m`).
    pub fn from_milli(v: i64) -> Self {
        Self {
            nanos: i128::from(v) * 1_000_000,
            format: Format::DecimalSI,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// The value in units, rounded up (`MilliValue`'s coarser sibling `Value`).
    pub fn value(&self) -> i64 {
        clamp(div_round_up(self.nanos, NANO))
    }

    /// The value in thousandths of a unit, rounded up (`MilliValue`).
    pub fn milli_value(&self) -> i64 {
        clamp(div_round_up(self.nanos, 1_000_000))
    }

    /// The exact value in nano-units.
    pub fn nano_value(&self) -> i128 {
        self.nanos
    }

    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANO as f64
    }

    /// Sum of quantities in the first one's format; zero when empty.
    pub fn sum<I: IntoIterator<Item = Quantity>>(items: I) -> Self {
        let mut it = items.into_iter();
        let Some(first) = it.next() else {
            return Self::zero();
        };
        it.fold(first, |a, b| a + b)
    }

    /// Parses a `k8s-openapi` quantity string.
    pub fn from_api(q: &ApiQuantity) -> Result<Self, QuantityError> {
        q.0.parse()
    }

    /// The canonical form as a `k8s-openapi` quantity.
    pub fn to_api(&self) -> ApiQuantity {
        ApiQuantity(self.to_string())
    }
}

/// Sum, keeping the left operand's format.
impl std::ops::Add for Quantity {
    type Output = Quantity;
    fn add(self, other: Self) -> Self {
        Self {
            nanos: self.nanos.saturating_add(other.nanos),
            format: self.format,
        }
    }
}

/// Difference, keeping the left operand's format.
impl std::ops::Sub for Quantity {
    type Output = Quantity;
    fn sub(self, other: Self) -> Self {
        Self {
            nanos: self.nanos.saturating_sub(other.nanos),
            format: self.format,
        }
    }
}

impl std::ops::Neg for Quantity {
    type Output = Quantity;
    fn neg(self) -> Self {
        Self {
            nanos: -self.nanos,
            format: self.format,
        }
    }
}

impl std::iter::Sum for Quantity {
    fn sum<I: Iterator<Item = Quantity>>(iter: I) -> Self {
        Quantity::sum(iter)
    }
}

fn clamp(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

enum Mult {
    Decimal(i32),
    Binary(u32),
}

fn suffix_mult(s: &str) -> Result<(Mult, Format), QuantityError> {
    Ok(match s {
        "" => (Mult::Decimal(0), Format::DecimalSI),
        "n" => (Mult::Decimal(-9), Format::DecimalSI),
        "u" => (Mult::Decimal(-6), Format::DecimalSI),
        "m" => (Mult::Decimal(-3), Format::DecimalSI),
        "k" => (Mult::Decimal(3), Format::DecimalSI),
        "M" => (Mult::Decimal(6), Format::DecimalSI),
        "G" => (Mult::Decimal(9), Format::DecimalSI),
        "T" => (Mult::Decimal(12), Format::DecimalSI),
        "P" => (Mult::Decimal(15), Format::DecimalSI),
        "E" => (Mult::Decimal(18), Format::DecimalSI),
        "Ki" => (Mult::Binary(1), Format::BinarySI),
        "Mi" => (Mult::Binary(2), Format::BinarySI),
        "Gi" => (Mult::Binary(3), Format::BinarySI),
        "Ti" => (Mult::Binary(4), Format::BinarySI),
        "Pi" => (Mult::Binary(5), Format::BinarySI),
        "Ei" => (Mult::Binary(6), Format::BinarySI),
        _ => {
            let rest = s.strip_prefix(['e', 'E']).ok_or(QuantityError::Suffix)?;
            let exp: i32 = rest.parse().map_err(|_| QuantityError::Suffix)?;
            (Mult::Decimal(exp), Format::DecimalExponent)
        }
    })
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(QuantityError::FormatWrong);
        }
        let b = s.as_bytes();
        let mut i = 0;
        let negative = match b[0] {
            b'-' => {
                i += 1;
                true
            }
            b'+' => {
                i += 1;
                false
            }
            _ => false,
        };
        let mut digits = String::new();
        let mut frac_len: u32 = 0;
        let mut seen_dot = false;
        while i < b.len() {
            match b[i] {
                c @ b'0'..=b'9' => {
                    digits.push(c as char);
                    if seen_dot {
                        frac_len += 1;
                    }
                }
                b'.' if !seen_dot => seen_dot = true,
                _ => break,
            }
            i += 1;
        }
        if digits.is_empty() {
            return Err(QuantityError::FormatWrong);
        }
        let suffix = &s[i..];
        let suffix_ok = {
            let sb = suffix.as_bytes();
            let mut j = 0;
            while j < sb.len() && b"eEinumkKMGTP".contains(&sb[j]) {
                j += 1;
            }
            if j < sb.len() && (sb[j] == b'-' || sb[j] == b'+') {
                j += 1;
            }
            sb[j..].iter().all(u8::is_ascii_digit)
        };
        if !suffix_ok {
            return Err(QuantityError::FormatWrong);
        }
        let (mult, format) = suffix_mult(suffix)?;
        let trimmed = digits.trim_start_matches('0');
        let n: i128 = if trimmed.is_empty() {
            0
        } else {
            trimmed.parse().map_err(|_| QuantityError::Numeric)?
        };
        let nanos = match mult {
            Mult::Decimal(exp) => {
                let shift = 9 + exp - frac_len as i32;
                if shift >= 0 {
                    let p = pow10(shift as u32).ok_or(QuantityError::Numeric)?;
                    n.checked_mul(p).ok_or(QuantityError::Numeric)?
                } else {
                    match pow10((-shift) as u32) {
                        Some(p) => div_round_up(n, p),
                        // Far below a nano-unit: rounds up to 1n unless zero.
                        None => i128::from(n != 0),
                    }
                }
            }
            Mult::Binary(k) => {
                let p = 1024i128.pow(k);
                let scaled = n
                    .checked_mul(p)
                    .and_then(|x| x.checked_mul(NANO))
                    .ok_or(QuantityError::Numeric)?;
                div_round_up(scaled, pow10(frac_len).ok_or(QuantityError::Numeric)?)
            }
        };
        let nanos = if negative { -nanos } else { nanos };
        Ok(Self { nanos, format })
    }
}

impl fmt::Display for Quantity {
    /// Kubernetes' canonical form: an integer mantissa and the largest
    /// suffix that keeps it an integer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let mut format = self.format;
        if format == Format::BinarySI && (self.nanos.abs() < 1024 * NANO || self.nanos % NANO != 0)
        {
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let mut n = self.nanos / NANO;
            let mut k = 0;
            while k < 6 && n % 1024 == 0 {
                n /= 1024;
                k += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][k];
            return write!(f, "{n}{suffix}");
        }
        let mut m = self.nanos;
        let mut e: i32 = -9;
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        let mut e3 = e.div_euclid(3) * 3;
        if e3 > 18 {
            e3 = 18;
        }
        for _ in 0..(e - e3) {
            m *= 10;
        }
        if format == Format::DecimalExponent {
            return if e3 == 0 {
                write!(f, "{m}")
            } else {
                write!(f, "{m}e{e3}")
            };
        }
        let suffix = match e3 {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            _ => "E",
        };
        write!(f, "{m}{suffix}")
    }
}

impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Kubernetes accepts JSON numbers as quantities too.
        let v = serde_json::Value::deserialize(d)?;
        let s = match &v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => {
                return Err(serde::de::Error::custom(
                    "quantity must be a string or a number",
                ));
            }
        };
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn canonical_forms() {
        let cases = [
            ("0", "0"),
            ("0m", "0"),
            ("-0", "0"),
            ("1", "1"),
            ("100m", "100m"),
            ("0.1", "100m"),
            ("1.5", "1500m"),
            ("1500", "1500"),
            ("2000", "2k"),
            ("1000000", "1M"),
            ("1k", "1k"),
            ("1Ki", "1Ki"),
            ("1024", "1024"),
            ("1.5Gi", "1536Mi"),
            ("0.5Ki", "512"),
            ("1025Ki", "1025Ki"),
            ("2048Ki", "2Mi"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("129e+6", "129e6"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("1E3", "1e3"),
            ("1e-12", "1e-9"),
            ("0.000000000001", "1n"),
            ("1.0000000001", "1000000001n"),
            ("-100m", "-100m"),
            ("+5", "5"),
            ("5.", "5"),
            (".5", "500m"),
            ("12345678901234567890", "12345678901234567890"),
            ("1000E", "1000E"),
            ("8Ei", "8Ei"),
            ("250u", "250u"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn parse_errors() {
        let cases = [
            ("", QuantityError::FormatWrong),
            ("abc", QuantityError::FormatWrong),
            (".", QuantityError::FormatWrong),
            ("1.2.3", QuantityError::FormatWrong),
            ("1 Gi", QuantityError::FormatWrong),
            ("1Gb", QuantityError::FormatWrong),
            ("1Qi", QuantityError::FormatWrong),
            ("1KiB", QuantityError::FormatWrong),
            ("1ki", QuantityError::Suffix),
            ("1mm", QuantityError::Suffix),
            ("1e", QuantityError::Suffix),
            ("1e1000000000000", QuantityError::Suffix),
            ("1e40", QuantityError::Numeric),
            (
                "999999999999999999999999999999999999999999",
                QuantityError::Numeric,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Quantity>().unwrap_err(), want, "{input}");
        }
        assert_eq!(
            QuantityError::FormatWrong.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn values_round_up() {
        let cases = [
            ("100m", 1, 100),
            ("1", 1, 1000),
            ("1.5", 2, 1500),
            ("1n", 1, 1),
            ("1Ki", 1024, 1_024_000),
            ("2Gi", 2_147_483_648, 2_147_483_648_000),
            ("-1.5", -2, -1500),
            ("0", 0, 0),
        ];
        for (input, value, milli) in cases {
            assert_eq!(q(input).value(), value, "{input}");
            assert_eq!(q(input).milli_value(), milli, "{input}");
        }
    }

    #[test]
    fn compare_and_sum() {
        assert!(q("100m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(
            Quantity::sum([q("100m"), q("250m"), q("1")]).to_string(),
            "1350m"
        );
        assert_eq!(Quantity::sum([q("1Gi"), q("512Mi")]).to_string(), "1536Mi");
        assert_eq!(Quantity::sum(Vec::new()).to_string(), "0");
        assert_eq!((q("2") - q("500m")).to_string(), "1500m");
        assert_eq!((q("1") - q("2")).to_string(), "-1");
        assert_eq!((-q("3")).to_string(), "-3");
        assert_eq!(
            [q("1"), q("2")].into_iter().sum::<Quantity>().to_string(),
            "3"
        );
        assert_eq!(Quantity::from_milli(3900).to_string(), "3900m");
        assert_eq!(Quantity::from_int(4, Format::DecimalSI).to_string(), "4");
        assert_eq!(
            Quantity::from_int(8 * 1024 * 1024 * 1024, Format::BinarySI).to_string(),
            "8Gi"
        );
        assert!((q("1.5").as_f64() - 1.5).abs() < 1e-12);
    }

    #[test]
    fn api_and_serde_round_trip() {
        let api = ApiQuantity("0.5".to_owned());
        let parsed = Quantity::from_api(&api).unwrap();
        assert_eq!(parsed.to_api(), ApiQuantity("500m".to_owned()));
        let v: Quantity = serde_json::from_value(serde_json::json!(2)).unwrap();
        assert_eq!(v.to_string(), "2");
        let v: Quantity = serde_json::from_value(serde_json::json!("64Mi")).unwrap();
        assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!("64Mi"));
        assert!(serde_json::from_value::<Quantity>(serde_json::json!("x")).is_err());
    }
}
