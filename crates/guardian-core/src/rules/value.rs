//! Literals in rules (amounts with units, percentages, addresses), comparison operators, and how
//! decoded ABI values are compared and rendered.
//!
//! Literals are parsed once, against the ABI type they will be compared with, when the engine is
//! built; evaluation only compares values.

use std::{cmp::Ordering, collections::BTreeMap, fmt, str::FromStr};

use alloy_dyn_abi::{DynSolType, DynSolValue};
use alloy_primitives::{Address, B256, I256, U256, U512, utils::ParseUnits};
use serde::{Deserialize, Serialize};

/// A comparison between two values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    /// `==`
    #[serde(rename = "==")]
    Eq,
    /// `!=`
    #[serde(rename = "!=")]
    Ne,
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
}

impl CmpOp {
    /// Every operator, longest spelling first so a prefix match never takes `<` for `<=`.
    pub const ALL: [Self; 6] = [Self::Eq, Self::Ne, Self::Le, Self::Ge, Self::Lt, Self::Gt];

    /// The operator as written in rules.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }

    /// Whether the operator needs an order (numbers only), not just equality.
    pub const fn is_ordering(self) -> bool {
        !matches!(self, Self::Eq | Self::Ne)
    }

    /// Whether `ordering` (left compared with right) satisfies the operator.
    pub const fn accepts(self, ordering: Ordering) -> bool {
        match self {
            Self::Eq => matches!(ordering, Ordering::Equal),
            Self::Ne => !matches!(ordering, Ordering::Equal),
            Self::Lt => matches!(ordering, Ordering::Less),
            Self::Le => !matches!(ordering, Ordering::Greater),
            Self::Gt => matches!(ordering, Ordering::Greater),
            Self::Ge => !matches!(ordering, Ordering::Less),
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CmpOp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| format!("unknown operator {s:?} (expected ==, !=, <, <=, > or >=)"))
    }
}

/// A share, such as a revert rate or a balance drop, held exactly in parts per million.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ratio {
    ppm: u32,
}

impl Ratio {
    /// One million parts: 100 %.
    pub const ONE: Self = Self { ppm: 1_000_000 };

    /// From parts per million (clamped to 100 %).
    pub const fn from_ppm(ppm: u32) -> Self {
        Self { ppm: if ppm > 1_000_000 { 1_000_000 } else { ppm } }
    }

    /// Parts per million.
    pub const fn ppm(self) -> u32 {
        self.ppm
    }

    /// From a fraction (0.1 = 10 %), rounded to the nearest part per million.
    pub fn from_fraction(fraction: f64) -> Self {
        // Clamped to [0, 1] first, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ppm = (fraction.clamp(0.0, 1.0) * 1_000_000.0).round() as u32;
        Self::from_ppm(ppm)
    }

    /// Whether `part / whole` is strictly above this ratio (exact integer arithmetic).
    pub fn exceeded_by(self, part: U256, whole: U256) -> bool {
        if whole.is_zero() {
            return false;
        }
        U512::from(part) * U512::from(1_000_000u64) > U512::from(self.ppm) * U512::from(whole)
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, frac) = (self.ppm / 10_000, self.ppm % 10_000);
        if frac == 0 {
            write!(f, "{int}%")
        } else {
            let frac = format!("{frac:04}");
            write!(f, "{int}.{}%", frac.trim_end_matches('0'))
        }
    }
}

impl FromStr for Ratio {
    type Err = String;

    /// `"10%"`, `"2.5 %"`: a percentage between 0 and 100 with at most four decimals.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = || format!("expected a percentage such as \"10%\" or \"2.5%\", got {s:?}");
        let number = s.trim().strip_suffix('%').ok_or_else(expected)?.trim();
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if int.is_empty()
            || frac.len() > 4
            || !(int.chars().chain(frac.chars())).all(|c| c.is_ascii_digit())
        {
            return Err(expected());
        }
        let int: u32 = int.parse().map_err(|_| expected())?;
        let frac: u32 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<4}").parse().map_err(|_| expected())?
        };
        let ppm = int
            .checked_mul(10_000)
            .and_then(|p| p.checked_add(frac))
            .filter(|p| *p <= 1_000_000)
            .ok_or_else(|| format!("a percentage is at most 100%, got {s:?}"))?;
        Ok(Self { ppm })
    }
}

/// Parse an amount: a decimal or `0x` hex integer, optionally followed by a unit (`wei`, `gwei`,
/// `ether`, ...) and possibly negative. `_` may separate digits: `5_000 gwei`.
pub fn parse_amount(text: &str) -> Result<ParseUnits, String> {
    let cleaned: String = text.trim().chars().filter(|c| *c != '_').collect();
    let (number, unit) = match cleaned.split_once(char::is_whitespace) {
        Some((number, unit)) => (number.trim(), unit.trim()),
        None => (cleaned.as_str(), "wei"),
    };
    if number.is_empty() {
        return Err(format!("expected an amount such as \"5 ether\" or \"1000\", got {text:?}"));
    }
    if unit.chars().any(|c| c.is_ascii_digit()) {
        return Err(format!("unknown unit {unit:?} (expected wei, gwei or ether)"));
    }
    let decimals = unit
        .parse::<alloy_primitives::utils::Unit>()
        .map_err(|_| format!("unknown unit {unit:?} (expected wei, gwei or ether)"))?
        .get();
    if let Some((_, fraction)) = number.split_once('.')
        && fraction.len() > usize::from(decimals)
    {
        return Err(format!("{text:?} is not a whole number of wei"));
    }
    if let Some(hex) = number.strip_prefix("0x") {
        if unit != "wei" {
            return Err(format!("a hex amount takes no unit, got {text:?}"));
        }
        return U256::from_str_radix(hex, 16)
            .map(ParseUnits::U256)
            .map_err(|e| format!("bad hex amount {text:?}: {e}"));
    }
    alloy_primitives::utils::parse_units(number, unit).map_err(|e| {
        format!("bad amount {text:?}: {e} (expected e.g. \"5 ether\", \"20 gwei\" or \"1000\")")
    })
}

/// Parse an unsigned amount (see [`parse_amount`]).
pub fn parse_uint_amount(text: &str) -> Result<U256, String> {
    match parse_amount(text)? {
        ParseUnits::U256(v) => Ok(v),
        ParseUnits::I256(v) if !v.is_negative() => Ok(v.into_raw()),
        ParseUnits::I256(_) => Err(format!("expected a non-negative amount, got {text:?}")),
    }
}

/// Parse `text` as a value of ABI type `ty`. `names` resolves identifiers to addresses (the
/// watched contracts' configured names), so rules can say `to == vault`.
pub fn parse_literal(
    ty: &DynSolType,
    text: &str,
    names: &BTreeMap<String, Address>,
) -> Result<DynSolValue, String> {
    let text = text.trim();
    match ty {
        DynSolType::Uint(bits) => {
            let value = parse_uint_amount(text)?;
            if *bits < 256 && value.bit_len() > *bits {
                return Err(format!("{text:?} does not fit in uint{bits}"));
            }
            Ok(DynSolValue::Uint(value, *bits))
        }
        DynSolType::Int(bits) => {
            let value = match parse_amount(text)? {
                ParseUnits::I256(v) => v,
                ParseUnits::U256(v) => {
                    I256::try_from(v).map_err(|_| format!("{text:?} does not fit in int{bits}"))?
                }
            };
            Ok(DynSolValue::Int(value, *bits))
        }
        DynSolType::Address => {
            if let Some(address) = names.get(text) {
                return Ok(DynSolValue::Address(*address));
            }
            text.parse::<Address>().map(DynSolValue::Address).map_err(|_| {
                format!("expected an address (0x followed by 40 hex digits) or a watched contract's name, got {text:?}")
            })
        }
        DynSolType::Bool => match text {
            "true" => Ok(DynSolValue::Bool(true)),
            "false" => Ok(DynSolValue::Bool(false)),
            _ => Err(format!("expected true or false, got {text:?}")),
        },
        DynSolType::FixedBytes(size) => {
            let bytes = alloy_primitives::hex::decode(text)
                .map_err(|e| format!("expected {size} bytes of hex, got {text:?}: {e}"))?;
            if bytes.len() != *size {
                return Err(format!(
                    "expected {size} bytes of hex, got {} in {text:?}",
                    bytes.len()
                ));
            }
            Ok(DynSolValue::FixedBytes(B256::right_padding_from(&bytes), *size))
        }
        DynSolType::String => {
            let unquoted = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
            Ok(DynSolValue::String(unquoted.to_owned()))
        }
        other => other
            .coerce_str(text)
            .map_err(|e| format!("expected a {other} value, got {text:?}: {e}")),
    }
}

/// Whether values of this type can be ordered (`<`, `>`, ...), not only compared for equality.
pub const fn is_numeric(ty: &DynSolType) -> bool {
    matches!(ty, DynSolType::Uint(_) | DynSolType::Int(_))
}

/// Order two numbers, whatever their widths or signs; `None` if either is not a number.
pub fn numeric_cmp(left: &DynSolValue, right: &DynSolValue) -> Option<Ordering> {
    use DynSolValue::{Int, Uint};
    Some(match (left, right) {
        (Uint(a, _), Uint(b, _)) => a.cmp(b),
        (Int(a, _), Int(b, _)) => a.cmp(b),
        (Int(a, _), Uint(b, _)) => {
            if a.is_negative() {
                Ordering::Less
            } else {
                a.into_raw().cmp(b)
            }
        }
        (Uint(a, _), Int(b, _)) => {
            if b.is_negative() {
                Ordering::Greater
            } else {
                a.cmp(&b.into_raw())
            }
        }
        _ => return None,
    })
}

/// Whether `left op right` holds. Numbers compare by value; other values only by equality (an
/// ordering operator on them never holds, and the engine refuses such rules when it is built).
pub fn holds(left: &DynSolValue, op: CmpOp, right: &DynSolValue) -> bool {
    match numeric_cmp(left, right) {
        Some(ordering) => op.accepts(ordering),
        None => match op {
            CmpOp::Eq => left == right,
            CmpOp::Ne => left != right,
            _ => false,
        },
    }
}

/// A decoded value as evidence text: numbers in decimal, addresses checksummed, bytes in hex.
pub fn render(value: &DynSolValue) -> String {
    match value {
        DynSolValue::Bool(b) => b.to_string(),
        DynSolValue::Int(v, _) => v.to_string(),
        DynSolValue::Uint(v, _) => v.to_string(),
        DynSolValue::FixedBytes(word, size) => {
            alloy_primitives::hex::encode_prefixed(&word[..*size])
        }
        DynSolValue::Address(a) => a.to_checksum(None),
        DynSolValue::Function(f) => alloy_primitives::hex::encode_prefixed(f.as_slice()),
        DynSolValue::Bytes(b) => alloy_primitives::hex::encode_prefixed(b),
        DynSolValue::String(s) => format!("{s:?}"),
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) => {
            format!("[{}]", items.iter().map(render).collect::<Vec<_>>().join(", "))
        }
        DynSolValue::Tuple(items) => {
            format!("({})", items.iter().map(render).collect::<Vec<_>>().join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETHER: u128 = 1_000_000_000_000_000_000;

    #[test]
    fn amounts_take_units_hex_and_separators() {
        assert_eq!(parse_uint_amount("5 ether"), Ok(U256::from(5 * ETHER)));
        assert_eq!(parse_uint_amount("1.5 ether"), Ok(U256::from(3 * ETHER / 2)));
        assert_eq!(parse_uint_amount("20 gwei"), Ok(U256::from(20_000_000_000u64)));
        assert_eq!(parse_uint_amount("5000000000000000000"), Ok(U256::from(5 * ETHER)));
        assert_eq!(parse_uint_amount("5_000"), Ok(U256::from(5000)));
        assert_eq!(parse_uint_amount("0x10"), Ok(U256::from(16)));
        assert!(parse_uint_amount("5 bananas").is_err());
        assert!(parse_uint_amount("5 18").is_err());
        assert!(parse_uint_amount("1.5").is_err(), "fractional wei");
        assert!(parse_uint_amount("-1").is_err());
        assert!(parse_uint_amount("").is_err());
    }

    #[test]
    fn ratios_are_exact_percentages() {
        let ten: Ratio = "10%".parse().expect("ratio");
        assert_eq!(ten.ppm(), 100_000);
        assert_eq!(ten.to_string(), "10%");
        assert_eq!("2.5 %".parse::<Ratio>().map(|r| r.to_string()), Ok("2.5%".into()));
        assert_eq!(Ratio::from_fraction(0.1), ten);
        assert!("10".parse::<Ratio>().is_err());
        assert!("101%".parse::<Ratio>().is_err());
        assert!("-1%".parse::<Ratio>().is_err());
        assert!("1.00001%".parse::<Ratio>().is_err());
        // 1 of 10 is exactly 10 %: not above it. 2 of 19 is.
        assert!(!ten.exceeded_by(U256::from(1), U256::from(10)));
        assert!(ten.exceeded_by(U256::from(2), U256::from(19)));
        assert!(!ten.exceeded_by(U256::from(5), U256::ZERO));
    }

    #[test]
    fn literals_parse_against_their_type() {
        let names = BTreeMap::from([("vault".to_owned(), Address::with_last_byte(7))]);
        let p = |ty: &str, text: &str| {
            parse_literal(&DynSolType::parse(ty).expect("type"), text, &names)
        };
        assert_eq!(
            p("uint256", "1 gwei"),
            Ok(DynSolValue::Uint(U256::from(1_000_000_000u64), 256))
        );
        assert!(p("uint8", "256").is_err());
        assert_eq!(p("int256", "-3"), Ok(DynSolValue::Int(I256::try_from(-3).expect("i256"), 256)));
        assert_eq!(p("address", "vault"), Ok(DynSolValue::Address(Address::with_last_byte(7))));
        assert!(p("address", "0x1234").is_err());
        assert!(p("address", "treasury").is_err());
        assert_eq!(p("bool", "true"), Ok(DynSolValue::Bool(true)));
        assert!(p("bool", "yes").is_err());
        assert!(p("bytes32", "0x01").is_err());
        assert_eq!(p("string", "\"hi\""), Ok(DynSolValue::String("hi".into())));
    }

    #[test]
    fn comparisons_cross_widths_and_signs() {
        let u = |v: u64| DynSolValue::Uint(U256::from(v), 64);
        let i = |v: i64| DynSolValue::Int(I256::try_from(v).expect("i256"), 256);
        assert!(holds(&u(5), CmpOp::Gt, &u(4)));
        assert!(!holds(&u(5), CmpOp::Gt, &u(5)));
        assert!(holds(&u(5), CmpOp::Ge, &u(5)));
        assert!(holds(&i(-1), CmpOp::Lt, &u(0)));
        assert!(holds(&u(1), CmpOp::Gt, &i(-1)));
        let a = DynSolValue::Address(Address::ZERO);
        assert!(holds(&a, CmpOp::Eq, &a));
        assert!(!holds(&a, CmpOp::Lt, &a));
        assert!("=>".parse::<CmpOp>().is_err());
        assert_eq!(">=".parse::<CmpOp>(), Ok(CmpOp::Ge));
    }
}
