//! A Kubernetes protobuf message as the JSON value Go's encoding/json writes for the same Go
//! object, driven by the schema (`protobuf_schema.rs`). Where the two shapes differ:
//!
//! - a zero scalar of a non-pointer field is left out (Go's `omitempty`), one of a pointer field
//!   kept (see `Form`); map values and list items are always kept (`labels: {a: ""}`);
//! - `metav1.Time` {seconds, nanos} is RFC 3339 to the second, `MicroTime` to the microsecond,
//!   an empty one is no value (Go writes the zero time as nothing);
//! - `IntOrString` {type, intVal, strVal} is a number or a string;
//! - `resource.Quantity` {string} is the string;
//! - `FieldsV1` {Raw} is the JSON its bytes hold;
//! - `bytes` are base64 (`Secret.data`);
//! - an inlined struct's fields join the parent object.
//!
//! Fields the schema does not know are skipped, as Go's decoders skip them.

use base64::Engine;
use serde_json::{Map, Value};

use crate::error::Result;
use crate::protobuf_schema::{Field, Form, Message, Type};
use crate::protobuf_wire::{malformed, Reader, WireType};

/// Deeper nesting than any served type has: a bound on the recursion whatever the input.
pub const NESTING_DEPTH_MAX: usize = 64;

/// One message's bytes as a JSON object (or, for the special messages, their JSON value).
pub fn message_to_json(bytes: &[u8], message: &'static Message) -> Result<Value> {
    convert_message(bytes, message, 0)
}

fn convert_message(bytes: &[u8], message: &'static Message, depth: usize) -> Result<Value> {
    if depth > NESTING_DEPTH_MAX {
        return Err(malformed(format!("messages nested deeper than {NESTING_DEPTH_MAX}")));
    }
    match message.name {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => return time(bytes, false),
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => return time(bytes, true),
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => return int_or_string(bytes),
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => return quantity(bytes),
        "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => return fields_v1(bytes),
        _ => {}
    }
    // A message field may occur more than once: protobuf merges the occurrences, which is what
    // decoding their concatenation does. So message bytes are gathered first, converted last.
    let mut singles: Vec<(&'static Field, Value)> = Vec::new();
    let mut messages: Vec<(&'static Field, Vec<u8>)> = Vec::new();
    let mut lists: Vec<(&'static Field, Vec<Value>)> = Vec::new();
    let mut maps: Vec<(&'static Field, Map<String, Value>)> = Vec::new();
    let mut reader = Reader::new(bytes);
    while !reader.is_done() {
        let (number, wire_type) = reader.key()?;
        let Some(field) = message.field(number) else {
            reader.skip(wire_type)?;
            continue;
        };
        let context = || format!("{}.{}", short_name(message), field.json_name);
        match field.form {
            Form::Repeated => {
                let values = match lists.iter_mut().find(|(known, _)| known.number == number) {
                    Some((_, values)) => values,
                    None => {
                        lists.push((field, Vec::new()));
                        &mut lists.last_mut().expect("just pushed").1
                    }
                };
                if wire_type == WireType::LengthDelimited && is_packable(field.value) {
                    let mut packed = Reader::new(reader.length_delimited()?);
                    while !packed.is_done() {
                        values.push(scalar(&mut packed, field.value, WireType::Varint, &context)?);
                    }
                } else {
                    values.push(value(&mut reader, field.value, wire_type, depth, &context)?);
                }
            }
            Form::Map => {
                let (key, entry_value) = map_entry(reader.length_delimited()?, field.value, depth, &context)?;
                match maps.iter_mut().find(|(known, _)| known.number == number) {
                    Some((_, map)) => {
                        map.insert(key, entry_value);
                    }
                    None => maps.push((field, Map::from_iter([(key, entry_value)]))),
                }
            }
            Form::Single | Form::Pointer | Form::Inline => match field.value {
                Type::Message(_) => {
                    expect_wire_type(wire_type, WireType::LengthDelimited, &context)?;
                    let bytes = reader.length_delimited()?;
                    match messages.iter_mut().find(|(known, _)| known.number == number) {
                        Some((_, gathered)) => gathered.extend_from_slice(bytes),
                        None => messages.push((field, bytes.to_vec())),
                    }
                }
                scalar_type => {
                    let converted = scalar(&mut reader, scalar_type, wire_type, &context)?;
                    singles.retain(|(known, _)| known.number != number);
                    singles.push((field, converted));
                }
            },
        }
    }
    let mut object = Map::new();
    for (field, converted) in singles {
        if field.form == Form::Pointer || !is_zero(&converted) {
            object.insert(field.json_name.to_string(), converted);
        }
    }
    for (field, bytes) in messages {
        let Type::Message(nested) = field.value else { unreachable!("gathered only message fields") };
        match convert_message(&bytes, nested, depth + 1)? {
            Value::Null => {}
            Value::Object(inlined) if field.form == Form::Inline => object.extend(inlined),
            converted => {
                object.insert(field.json_name.to_string(), converted);
            }
        }
    }
    for (field, values) in lists {
        object.insert(field.json_name.to_string(), Value::Array(values));
    }
    for (field, map) in maps {
        object.insert(field.json_name.to_string(), Value::Object(map));
    }
    Ok(Value::Object(object))
}

/// One value of any type (a list item; a map value).
fn value(
    reader: &mut Reader<'_>,
    value_type: Type,
    wire_type: WireType,
    depth: usize,
    context: &dyn Fn() -> String,
) -> Result<Value> {
    match value_type {
        Type::Message(nested) => {
            expect_wire_type(wire_type, WireType::LengthDelimited, context)?;
            convert_message(reader.length_delimited()?, nested, depth + 1)
        }
        scalar_type => scalar(reader, scalar_type, wire_type, context),
    }
}

fn scalar(
    reader: &mut Reader<'_>,
    scalar_type: Type,
    wire_type: WireType,
    context: &dyn Fn() -> String,
) -> Result<Value> {
    match scalar_type {
        Type::String => {
            expect_wire_type(wire_type, WireType::LengthDelimited, context)?;
            let text = std::str::from_utf8(reader.length_delimited()?)
                .map_err(|_| malformed(format!("{} is not valid UTF-8", context())))?;
            Ok(Value::String(text.to_string()))
        }
        Type::Bytes => {
            expect_wire_type(wire_type, WireType::LengthDelimited, context)?;
            Ok(Value::String(base64::engine::general_purpose::STANDARD.encode(reader.length_delimited()?)))
        }
        Type::Bool => {
            expect_wire_type(wire_type, WireType::Varint, context)?;
            Ok(Value::Bool(reader.varint()? != 0))
        }
        // Go reads a varint into an int32 by truncation, which also undoes the ten-byte sign
        // extension of a negative int32.
        Type::Int32 => {
            expect_wire_type(wire_type, WireType::Varint, context)?;
            Ok(Value::from(reader.varint()? as i32))
        }
        Type::Int64 => {
            expect_wire_type(wire_type, WireType::Varint, context)?;
            Ok(Value::from(reader.varint()? as i64))
        }
        Type::Message(_) => unreachable!("messages are converted by the caller"),
    }
}

fn map_entry(bytes: &[u8], value_type: Type, depth: usize, context: &dyn Fn() -> String) -> Result<(String, Value)> {
    let mut key = String::new();
    let mut entry_value = None;
    let mut reader = Reader::new(bytes);
    while !reader.is_done() {
        match reader.key()? {
            (1, wire_type) => {
                let Value::String(text) = scalar(&mut reader, Type::String, wire_type, context)? else {
                    unreachable!("a string converts to a string")
                };
                key = text;
            }
            (2, wire_type) => entry_value = Some(value(&mut reader, value_type, wire_type, depth, context)?),
            (_, wire_type) => reader.skip(wire_type)?,
        }
    }
    // An entry without its value holds the type's zero value.
    let entry_value = match entry_value {
        Some(present) => present,
        None => match value_type {
            Type::Message(nested) => convert_message(&[], nested, depth + 1)?,
            Type::String | Type::Bytes => Value::String(String::new()),
            Type::Bool => Value::Bool(false),
            Type::Int32 | Type::Int64 => Value::from(0),
        },
    };
    Ok((key, entry_value))
}

/// Repeated varints may come packed: one length-delimited run of values.
fn is_packable(value_type: Type) -> bool {
    matches!(value_type, Type::Bool | Type::Int32 | Type::Int64)
}

fn expect_wire_type(found: WireType, wanted: WireType, context: &dyn Fn() -> String) -> Result<()> {
    if found == wanted {
        Ok(())
    } else {
        Err(malformed(format!("wrong wire type {found:?} for {}, which is {wanted:?}", context())))
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(text) => text.is_empty(),
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_i64() == Some(0),
        _ => false,
    }
}

fn short_name(message: &Message) -> &'static str {
    message.name.rsplit('.').next().unwrap_or(message.name)
}

/// The fields of a small fixed message: (number, varint or bytes) pairs, last one wins.
fn small_message(bytes: &[u8], name: &str) -> Result<Vec<(u32, SmallValue)>> {
    let mut fields = Vec::new();
    let mut reader = Reader::new(bytes);
    while !reader.is_done() {
        let (number, wire_type) = reader.key()?;
        let found = match wire_type {
            WireType::Varint => SmallValue::Varint(reader.varint()?),
            WireType::LengthDelimited => SmallValue::Bytes(reader.length_delimited()?.to_vec()),
            other => {
                return Err(malformed(format!("wrong wire type {other:?} for field {number} of {name}")));
            }
        };
        fields.retain(|(known, _)| *known != number);
        fields.push((number, found));
    }
    Ok(fields)
}

#[derive(Debug)]
enum SmallValue {
    Varint(u64),
    Bytes(Vec<u8>),
}

fn small_varint(fields: &[(u32, SmallValue)], number: u32, name: &str) -> Result<u64> {
    match fields.iter().find(|(known, _)| *known == number) {
        None => Ok(0),
        Some((_, SmallValue::Varint(value))) => Ok(*value),
        Some(_) => Err(malformed(format!("field {number} of {name} is not a number"))),
    }
}

fn small_string(fields: &[(u32, SmallValue)], number: u32, name: &str) -> Result<Option<String>> {
    match fields.iter().find(|(known, _)| *known == number) {
        None => Ok(None),
        Some((_, SmallValue::Bytes(bytes))) => String::from_utf8(bytes.clone())
            .map(Some)
            .map_err(|_| malformed(format!("field {number} of {name} is not valid UTF-8"))),
        Some(_) => Err(malformed(format!("field {number} of {name} is not a string"))),
    }
}

/// `metav1.Time` and `MicroTime`: {1: seconds, 2: nanos} since the epoch. Time keeps whole
/// seconds, as its JSON does (kube-apiserver drops the nanos too); MicroTime keeps microseconds.
fn time(bytes: &[u8], micro: bool) -> Result<Value> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let name = if micro { "MicroTime" } else { "Time" };
    let fields = small_message(bytes, name)?;
    let seconds = small_varint(&fields, 1, name)? as i64;
    let nanos = small_varint(&fields, 2, name)? as i32;
    let timestamp = jiff::Timestamp::from_second(seconds)
        .map_err(|_| malformed(format!("{name} of {seconds} seconds is out of range")))?;
    // `Timestamp`'s Display of a whole second is RFC 3339 in UTC: `2006-01-02T15:04:05Z`.
    let text = timestamp.to_string();
    if !micro {
        return Ok(Value::String(text));
    }
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(malformed(format!("MicroTime has {nanos} nanoseconds")));
    }
    let whole = text.strip_suffix('Z').expect("a UTC timestamp ends with Z");
    Ok(Value::String(format!("{whole}.{:06}Z", nanos / 1000)))
}

/// `IntOrString`: {1: type (0 int, 1 string), 2: intVal, 3: strVal}.
fn int_or_string(bytes: &[u8]) -> Result<Value> {
    let name = "IntOrString";
    let fields = small_message(bytes, name)?;
    match small_varint(&fields, 1, name)? {
        0 => Ok(Value::from(small_varint(&fields, 2, name)? as i32)),
        1 => Ok(Value::String(small_string(&fields, 3, name)?.unwrap_or_default())),
        other => Err(malformed(format!("IntOrString of unknown type {other}"))),
    }
}

/// `resource.Quantity`: {1: string}; the zero quantity when absent.
fn quantity(bytes: &[u8]) -> Result<Value> {
    let name = "Quantity";
    let fields = small_message(bytes, name)?;
    Ok(Value::String(small_string(&fields, 1, name)?.unwrap_or_else(|| "0".to_string())))
}

/// `FieldsV1`: {1: Raw}, JSON bytes.
fn fields_v1(bytes: &[u8]) -> Result<Value> {
    let name = "FieldsV1";
    let fields = small_message(bytes, name)?;
    match fields.iter().find(|(number, _)| *number == 1) {
        None => Ok(Value::Null),
        Some((_, SmallValue::Bytes(raw))) => {
            serde_json::from_slice(raw).map_err(|error| malformed(format!("FieldsV1 does not hold JSON: {error}")))
        }
        Some(_) => Err(malformed("field 1 of FieldsV1 is not bytes")),
    }
}
