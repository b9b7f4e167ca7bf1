//! Condition parameter types and the conversion of JSON context values into typed CEL values.
//!
//! OpenFGA decodes each declared parameter type once and converts a context value only for the
//! parameters a condition declares; keys it does not declare are ignored. Conversion is strict:
//! a value of the wrong JSON type, a number with a fraction for an `int`, a negative number for a
//! `uint`, a malformed duration, timestamp or IP address is an error naming the parameter, never a
//! silently different value. The rules and messages follow OpenFGA's
//! `internal/condition/types` converters, including that numeric strings (`"42"`) are accepted
//! for `int`, `uint` and `double`, as OpenFGA accepts them.

use super::go_time;
use super::ipaddress::IpAddress;
use crate::model::{ConditionParamTypeRef, TypeName};
use cel::common::types::{
    CelBool, CelDouble, CelDuration, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString,
    CelTimestamp, CelUInt,
};
use cel::common::value::Val;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::fmt;

/// How deeply generic types may nest (`list<list<...>>`); OpenFGA's DSL writes one level, JSON
/// models could write more, and a bound keeps decoding and conversion recursion finite.
const MAX_TYPE_DEPTH: usize = 8;

/// How deeply an `any` value may nest. serde_json stops at 128 levels when parsing; this keeps
/// the conversion well inside any stack even for maps built in code.
const MAX_VALUE_DEPTH: usize = 64;

/// A decoded condition parameter type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamType {
    /// `any`: the JSON value as is (numbers become `double`, as protobuf's `Struct` holds them).
    Any,
    /// `bool`.
    Bool,
    /// `string`.
    String,
    /// `int`.
    Int,
    /// `uint`.
    Uint,
    /// `double`.
    Double,
    /// `duration`.
    Duration,
    /// `timestamp`.
    Timestamp,
    /// `ipaddress`.
    IpAddress,
    /// `list<T>`.
    List(Box<ParamType>),
    /// `map<T>` with string keys.
    Map(Box<ParamType>),
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamType::Any => f.write_str("any"),
            ParamType::Bool => f.write_str("bool"),
            ParamType::String => f.write_str("string"),
            ParamType::Int => f.write_str("int"),
            ParamType::Uint => f.write_str("uint"),
            ParamType::Double => f.write_str("double"),
            ParamType::Duration => f.write_str("duration"),
            ParamType::Timestamp => f.write_str("timestamp"),
            ParamType::IpAddress => f.write_str("ipaddress"),
            ParamType::List(t) => write!(f, "list<{t}>"),
            ParamType::Map(t) => write!(f, "map<{t}>"),
        }
    }
}

/// The wire name of a type (`TYPE_NAME_MAP`), as OpenFGA's messages quote it.
fn wire_name(t: TypeName) -> &'static str {
    match t {
        TypeName::Unspecified => "TYPE_NAME_UNSPECIFIED",
        TypeName::Any => "TYPE_NAME_ANY",
        TypeName::Bool => "TYPE_NAME_BOOL",
        TypeName::String => "TYPE_NAME_STRING",
        TypeName::Int => "TYPE_NAME_INT",
        TypeName::Uint => "TYPE_NAME_UINT",
        TypeName::Double => "TYPE_NAME_DOUBLE",
        TypeName::Duration => "TYPE_NAME_DURATION",
        TypeName::Timestamp => "TYPE_NAME_TIMESTAMP",
        TypeName::Map => "TYPE_NAME_MAP",
        TypeName::List => "TYPE_NAME_LIST",
        TypeName::IpAddress => "TYPE_NAME_IPADDRESS",
    }
}

impl ParamType {
    /// Decodes a model's parameter type: `map` and `list` take exactly one generic type, every
    /// other type none, and `TYPE_NAME_UNSPECIFIED` is not a type.
    pub fn decode(type_ref: &ConditionParamTypeRef) -> Result<Self, String> {
        Self::decode_at(type_ref, 0)
    }

    fn decode_at(type_ref: &ConditionParamTypeRef, depth: usize) -> Result<Self, String> {
        if depth > MAX_TYPE_DEPTH {
            return Err(format!(
                "condition parameter types nest deeper than {MAX_TYPE_DEPTH} levels"
            ));
        }
        let name = type_ref.type_name;
        let found = type_ref.generic_types.len();
        let arity = |expected: usize| -> Result<(), String> {
            if found == expected {
                Ok(())
            } else {
                Err(format!(
                    "condition parameter type `{}` requires {expected} generic types; found {found}",
                    wire_name(name)
                ))
            }
        };
        let scalar = |t: ParamType| arity(0).map(|()| t);
        let generic = || -> Result<Box<ParamType>, String> {
            arity(1)?;
            match type_ref.generic_types.first() {
                Some(g) => Self::decode_at(g, depth + 1).map(Box::new),
                None => arity(usize::MAX).map(|()| Box::new(ParamType::Any)),
            }
        };
        match name {
            TypeName::Unspecified => Err(format!(
                "unknown condition parameter type `{}`",
                wire_name(name)
            )),
            TypeName::Any => scalar(ParamType::Any),
            TypeName::Bool => scalar(ParamType::Bool),
            TypeName::String => scalar(ParamType::String),
            TypeName::Int => scalar(ParamType::Int),
            TypeName::Uint => scalar(ParamType::Uint),
            TypeName::Double => scalar(ParamType::Double),
            TypeName::Duration => scalar(ParamType::Duration),
            TypeName::Timestamp => scalar(ParamType::Timestamp),
            TypeName::IpAddress => scalar(ParamType::IpAddress),
            TypeName::List => Ok(ParamType::List(generic()?)),
            TypeName::Map => Ok(ParamType::Map(generic()?)),
        }
    }

    /// Converts a JSON context value into a CEL value of this type. The error is the cause only;
    /// the caller names the condition and parameter.
    pub fn convert(&self, value: &Json) -> Result<Box<dyn Val>, String> {
        self.convert_at(value, 0)
    }

    fn convert_at(&self, value: &Json, depth: usize) -> Result<Box<dyn Val>, String> {
        Ok(match self {
            ParamType::Any => any_value(value, depth)?,
            ParamType::Bool => match value {
                Json::Bool(b) => Box::new(CelBool::from(*b)),
                other => return Err(expected("bool", other)),
            },
            ParamType::String => match value {
                Json::String(s) => Box::new(CelString::from(s.clone())),
                other => return Err(expected("string", other)),
            },
            ParamType::Int => Box::new(CelInt::from(to_int(value)?)),
            ParamType::Uint => Box::new(CelUInt::from(to_uint(value)?)),
            ParamType::Double => Box::new(CelDouble::from(to_double(value)?)),
            ParamType::Duration => match value {
                Json::String(s) => {
                    let d = go_time::parse_duration(s).map_err(|_| {
                        format!("expected a valid duration string, but found: '{s}'")
                    })?;
                    Box::new(CelDuration::from(d))
                }
                other => {
                    return Err(format!(
                        "expected a duration string, but found: {} '{}'",
                        go_type_name(other),
                        other
                    ));
                }
            },
            ParamType::Timestamp => match value {
                Json::String(s) => Box::new(CelTimestamp::from(go_time::parse_timestamp(s)?)),
                other => {
                    return Err(format!(
                        "expected RFC 3339 formatted timestamp string, but found: {} '{}'",
                        go_type_name(other),
                        other
                    ));
                }
            },
            ParamType::IpAddress => match value {
                Json::String(s) => Box::new(IpAddress::parse(s)?),
                other => {
                    return Err(format!(
                        "IPAddress requires a string parameter, got {} instead",
                        go_type_name(other)
                    ));
                }
            },
            ParamType::List(item) => match value {
                Json::Array(items) => {
                    let mut out: Vec<Box<dyn Val>> = Vec::with_capacity(items.len());
                    for (index, v) in items.iter().enumerate() {
                        out.push(item.convert_at(v, depth + 1).map_err(|e| {
                            format!("found an invalid list item at index `{index}`: {e}")
                        })?);
                    }
                    Box::new(CelList::from(out))
                }
                other => {
                    return Err(format!(
                        "list requires a list, found: {}",
                        go_type_name(other)
                    ));
                }
            },
            ParamType::Map(item) => match value {
                Json::Object(entries) => {
                    let mut out: HashMap<CelMapKey<'static>, Box<dyn Val>> =
                        HashMap::with_capacity(entries.len());
                    for (key, v) in entries {
                        let converted = item
                            .convert_at(v, depth + 1)
                            .map_err(|e| format!("found an invalid value for key '{key}': {e}"))?;
                        out.insert(CelMapKey::from(key.clone()), converted);
                    }
                    Box::new(CelMap::from(out))
                }
                other => {
                    return Err(format!(
                        "map requires a map, found: {}",
                        go_type_name(other)
                    ));
                }
            },
        })
    }
}

/// Go's `%T` of the value protobuf's `Struct.AsInterface()` yields for this JSON value, so
/// messages read like OpenFGA's.
fn go_type_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "<nil>",
        Json::Bool(_) => "bool",
        Json::Number(_) => "float64",
        Json::String(_) => "string",
        Json::Array(_) => "[]interface {}",
        Json::Object(_) => "map[string]interface {}",
    }
}

fn expected(go_type: &str, found: &Json) -> String {
    format!(
        "expected type value '{go_type}', but found '{}'",
        go_type_name(found)
    )
}

/// A number as OpenFGA's numeric converters see it: a JSON number, or a string holding one.
enum Numeric {
    Int(i128),
    Float(f64),
}

fn numeric(value: &Json, go_type: &str) -> Result<Numeric, String> {
    match value {
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Numeric::Int(i128::from(i)))
            } else if let Some(u) = n.as_u64() {
                Ok(Numeric::Int(i128::from(u)))
            } else {
                n.as_f64()
                    .map(Numeric::Float)
                    .ok_or_else(|| format!("expected a {go_type} value, but found '{n}'"))
            }
        }
        Json::String(s) => {
            let invalid =
                || format!("expected a {go_type} value, but found invalid string value '{s}'");
            // Go's big.ParseFloat(s, 10, ..): decimal digits, optional sign, fraction and
            // exponent; no hex, no underscores, no whitespace, no NaN.
            let plain = !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
            if !plain {
                return Err(invalid());
            }
            if let Ok(i) = s.parse::<i128>() {
                return Ok(Numeric::Int(i));
            }
            s.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Numeric::Float)
                .ok_or_else(invalid)
        }
        other => Err(expected(go_type, other)),
    }
}

/// Exact conversion of an integral float to i128, if it is integral and in a range that covers
/// both i64 and u64.
#[allow(clippy::cast_possible_truncation)]
fn integral(f: f64) -> Option<i128> {
    // 2^64 bounds both targets; beyond it the value is out of range either way.
    const BOUND: f64 = 18_446_744_073_709_551_616.0;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < BOUND).then_some(f as i128)
}

fn to_int(value: &Json) -> Result<i64, String> {
    let n = match numeric(value, "int64")? {
        Numeric::Int(i) => i,
        Numeric::Float(f) => integral(f).ok_or_else(|| {
            if f.is_finite() && f.fract() != 0.0 {
                format!("expected an int value, but found numeric value '{f}'")
            } else {
                format!("int value out of range: '{f}'")
            }
        })?,
    };
    i64::try_from(n).map_err(|_| format!("int value out of range: '{n}'"))
}

fn to_uint(value: &Json) -> Result<u64, String> {
    let n = match numeric(value, "uint64")? {
        Numeric::Int(i) => i,
        Numeric::Float(f) => integral(f).ok_or_else(|| {
            if f.is_finite() && f.fract() != 0.0 {
                format!("expected a uint value, but found numeric value '{f}'")
            } else {
                format!("uint value out of range: '{f}'")
            }
        })?,
    };
    u64::try_from(n).map_err(|_| format!("uint value out of range: '{n}'"))
}

#[allow(clippy::cast_precision_loss)]
fn to_double(value: &Json) -> Result<f64, String> {
    Ok(match numeric(value, "float64")? {
        Numeric::Int(i) => i as f64,
        Numeric::Float(f) => f,
    })
}

/// An `any` value: JSON as protobuf's `Struct` carries it, so every number is a `double`.
fn any_value(value: &Json, depth: usize) -> Result<Box<dyn Val>, String> {
    if depth > MAX_VALUE_DEPTH {
        return Err(format!("value nests deeper than {MAX_VALUE_DEPTH} levels"));
    }
    Ok(match value {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        Json::String(s) => Box::new(CelString::from(s.clone())),
        Json::Array(items) => {
            let mut out: Vec<Box<dyn Val>> = Vec::with_capacity(items.len());
            for v in items {
                out.push(any_value(v, depth + 1)?);
            }
            Box::new(CelList::from(out))
        }
        Json::Object(entries) => {
            let mut out: HashMap<CelMapKey<'static>, Box<dyn Val>> =
                HashMap::with_capacity(entries.len());
            for (k, v) in entries {
                out.insert(CelMapKey::from(k.clone()), any_value(v, depth + 1)?);
            }
            Box::new(CelMap::from(out))
        }
    })
}
