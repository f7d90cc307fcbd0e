//! A JSON object as the Kubernetes protobuf message go-to-protobuf's marshalers write for the same
//! Go object: the reverse of `protobuf_json.rs`, driven by the same schema (`protobuf_schema.rs`).
//!
//! Go's marshalers write what the Go struct holds, and a Go struct has every field, so:
//!
//! - fields go out in ascending number order;
//! - a non-pointer scalar is written even when zero (an absent JSON field is Go's zero value), a
//!   non-pointer struct even when empty; a pointer field only when set;
//! - list items are written one by one (proto2: nothing is packed); map entries sorted by key,
//!   each with its key and its value;
//! - `metav1.Time` is {seconds, nanos: 0}, and nothing at all for the zero time; `MicroTime`
//!   keeps its microseconds; `IntOrString` is {type, intVal, strVal}; `Quantity` {string};
//!   `FieldsV1` {Raw: the JSON};
//! - an inlined struct's fields are read from the parent object.
//!
//! JSON fields the schema does not know have no place in the message and are left out.

use base64::Engine;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::protobuf_json::NESTING_DEPTH_MAX;
use crate::protobuf_schema::{Field, Form, Message, Type};
use crate::protobuf_wire::{put_bytes_field, put_varint_field};

/// One JSON value as the bytes of `message`.
pub fn json_to_message(value: &Value, message: &'static Message) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_message(value, message, 0, &mut out)?;
    Ok(out)
}

fn unencodable(context: &str, detail: impl std::fmt::Display) -> Error {
    Error::Internal(format!("the object cannot be encoded as protobuf: {context}: {detail}"))
}

fn encode_message(value: &Value, message: &'static Message, depth: usize, out: &mut Vec<u8>) -> Result<()> {
    if depth > NESTING_DEPTH_MAX {
        return Err(unencodable(message.name, format!("nested deeper than {NESTING_DEPTH_MAX}")));
    }
    match message.name {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => return time(value, false, out),
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => return time(value, true, out),
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => return int_or_string(value, out),
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => return quantity(value, out),
        "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => return fields_v1(value, out),
        _ => {}
    }
    let empty = Map::new();
    let object = match value {
        Value::Object(object) => object,
        Value::Null => &empty,
        other => return Err(unencodable(short_name(message), format!("an object was expected, not {other}"))),
    };
    let mut fields: Vec<&'static Field> = message.fields.iter().collect();
    fields.sort_by_key(|field| field.number);
    for field in fields {
        let context = || format!("{}.{}", short_name(message), field.json_name);
        let present = object.get(field.json_name).filter(|found| !found.is_null());
        match field.form {
            Form::Single => {
                put_value(out, field.number, field.value, present.unwrap_or(&Value::Null), depth, &context)?
            }
            Form::Pointer => {
                if let Some(found) = present {
                    put_value(out, field.number, field.value, found, depth, &context)?;
                }
            }
            Form::Inline => put_value(out, field.number, field.value, value, depth, &context)?,
            Form::Repeated => match present {
                None => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        put_value(out, field.number, field.value, item, depth, &context)?;
                    }
                }
                Some(other) => return Err(unencodable(&context(), format!("a list was expected, not {other}"))),
            },
            Form::Map => match present {
                None => {}
                Some(Value::Object(entries)) => {
                    let mut keys: Vec<&String> = entries.keys().collect();
                    keys.sort();
                    for key in keys {
                        let mut entry = Vec::new();
                        put_bytes_field(&mut entry, 1, key.as_bytes());
                        put_value(&mut entry, 2, field.value, &entries[key], depth, &context)?;
                        put_bytes_field(out, field.number, &entry);
                    }
                }
                Some(other) => return Err(unencodable(&context(), format!("an object was expected, not {other}"))),
            },
        }
    }
    Ok(())
}

/// One value as field `number`; a null is the type's zero value.
fn put_value(
    out: &mut Vec<u8>,
    number: u32,
    value_type: Type,
    value: &Value,
    depth: usize,
    context: &dyn Fn() -> String,
) -> Result<()> {
    match value_type {
        Type::Message(nested) => {
            let mut bytes = Vec::new();
            encode_message(value, nested, depth + 1, &mut bytes)?;
            put_bytes_field(out, number, &bytes);
        }
        Type::String => match value {
            Value::Null => put_bytes_field(out, number, b""),
            Value::String(text) => put_bytes_field(out, number, text.as_bytes()),
            other => return Err(unencodable(&context(), format!("a string was expected, not {other}"))),
        },
        Type::Bytes => match value {
            Value::Null => put_bytes_field(out, number, b""),
            Value::String(text) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|error| unencodable(&context(), format!("not base64: {error}")))?;
                put_bytes_field(out, number, &bytes);
            }
            other => return Err(unencodable(&context(), format!("base64 was expected, not {other}"))),
        },
        Type::Bool => match value {
            Value::Null => put_varint_field(out, number, 0),
            Value::Bool(flag) => put_varint_field(out, number, u64::from(*flag)),
            other => return Err(unencodable(&context(), format!("a boolean was expected, not {other}"))),
        },
        // A negative number is sign-extended to ten bytes, as Go's `uint64(int32)` does.
        Type::Int32 => {
            let number_value = integer(value, context)?;
            let narrow = i32::try_from(number_value)
                .map_err(|_| unencodable(&context(), format!("{number_value} is out of the int32 range")))?;
            put_varint_field(out, number, i64::from(narrow) as u64);
        }
        Type::Int64 => put_varint_field(out, number, integer(value, context)? as u64),
    }
    Ok(())
}

fn integer(value: &Value, context: &dyn Fn() -> String) -> Result<i64> {
    match value {
        Value::Null => Ok(0),
        Value::Number(number) => {
            number.as_i64().ok_or_else(|| unencodable(&context(), format!("{number} is not a 64-bit integer")))
        }
        other => Err(unencodable(&context(), format!("an integer was expected, not {other}"))),
    }
}

fn short_name(message: &Message) -> &'static str {
    message.name.rsplit('.').next().unwrap_or(message.name)
}

/// `metav1.Time` and `MicroTime` as {1: seconds, 2: nanos}: Time drops the nanos (its JSON has
/// whole seconds), MicroTime keeps them. The zero time (null) is an empty message.
fn time(value: &Value, micro: bool, out: &mut Vec<u8>) -> Result<()> {
    let name = if micro { "MicroTime" } else { "Time" };
    let text = match value {
        Value::Null => return Ok(()),
        Value::String(text) => text,
        other => return Err(unencodable(name, format!("a timestamp was expected, not {other}"))),
    };
    let timestamp: jiff::Timestamp =
        text.parse().map_err(|error| unencodable(name, format!("{text:?} is not RFC 3339: {error}")))?;
    let nanos = if micro { timestamp.subsec_nanosecond() } else { 0 };
    put_varint_field(out, 1, timestamp.as_second() as u64);
    put_varint_field(out, 2, i64::from(nanos) as u64);
    Ok(())
}

/// `IntOrString`: {1: type (0 int, 1 string), 2: intVal, 3: strVal}, all three written.
fn int_or_string(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    let (kind, number, text) = match value {
        Value::Null => (0, 0, ""),
        Value::Number(_) => {
            let number = integer(value, &|| "IntOrString".to_string())?;
            let narrow =
                i32::try_from(number).map_err(|_| unencodable("IntOrString", format!("{number} is out of range")))?;
            (0, narrow, "")
        }
        Value::String(text) => (1, 0, text.as_str()),
        other => return Err(unencodable("IntOrString", format!("a number or a string was expected, not {other}"))),
    };
    put_varint_field(out, 1, kind);
    put_varint_field(out, 2, i64::from(number) as u64);
    put_bytes_field(out, 3, text.as_bytes());
    Ok(())
}

/// `resource.Quantity`: {1: its canonical string}; the zero quantity is "0". A number in the JSON
/// is the quantity of that number.
fn quantity(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    let text = match value {
        Value::Null => "0".to_string(),
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        other => return Err(unencodable("Quantity", format!("a quantity was expected, not {other}"))),
    };
    put_bytes_field(out, 1, text.as_bytes());
    Ok(())
}

/// `FieldsV1`: {1: Raw, the JSON}, absent for no fields.
fn fields_v1(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    if !value.is_null() {
        put_bytes_field(out, 1, &serde_json::to_vec(value).expect("a JSON value encodes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::protobuf_json::message_to_json;
    use crate::protobuf_schema::message_for;

    fn round_trip(api_version: &str, kind: &str, object: &Value) -> Value {
        let message = message_for(api_version, kind).unwrap();
        let bytes = json_to_message(object, message).unwrap();
        message_to_json(&bytes, message).unwrap()
    }

    /// What survives the trip: Go's JSON of the decoded struct, where an empty struct is `{}` and
    /// a zero scalar is left out; here both sides drop empty objects to compare.
    fn without_empty_objects(value: &Value) -> Value {
        match value {
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(key, field)| (key.clone(), without_empty_objects(field)))
                    .filter(|(_, field)| field.as_object().is_none_or(|inner| !inner.is_empty()))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(without_empty_objects).collect()),
            other => other.clone(),
        }
    }

    fn check(api_version: &str, kind: &str, object: Value) {
        let back = round_trip(api_version, kind, &object);
        assert_eq!(without_empty_objects(&back), without_empty_objects(&object), "{kind}");
    }

    #[test]
    fn objects_survive_the_round_trip() {
        check(
            "apps/v1",
            "Deployment",
            json!({
                "metadata": {
                    "name": "web", "namespace": "default", "uid": "u-1", "resourceVersion": "42", "generation": 3,
                    "creationTimestamp": "2024-05-06T07:08:09Z", "labels": {"b": "2", "a": "", "c": "3"},
                    "annotations": {"note": "x"}, "finalizers": ["f/one"],
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Thing", "name": "o", "uid": "u-0", "controller": true}],
                    "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                        "time": "2024-05-06T07:08:09Z", "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:spec": {"f:replicas": {}}}}],
                },
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "web"}},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {
                            "containers": [{
                                "name": "c", "image": "nginx", "command": ["a", "b"],
                                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
                                "env": [{"name": "E", "value": "v"}],
                            }],
                            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Mi"}},
                                        {"name": "s", "secret": {"secretName": "x", "defaultMode": 420}}],
                            "terminationGracePeriodSeconds": 30,
                            "automountServiceAccountToken": false,
                        },
                    },
                },
                "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True",
                    "lastUpdateTime": "2024-05-06T07:08:09Z", "reason": "r"}]},
            }),
        );
        check("v1", "Secret", json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"p": "cQ==", "e": ""}}));
        check(
            "coordination.k8s.io/v1",
            "Lease",
            json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15,
                "renewTime": "2024-05-06T07:08:09.123456Z"}}),
        );
        check(
            "v1",
            "PodList",
            json!({"metadata": {"resourceVersion": "7", "continue": "abc"},
                   "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b", "deletionTimestamp": "1970-01-01T00:00:00Z"}}]}),
        );
        check(
            "v1",
            "Status",
            json!({"metadata": {}, "status": "Failure", "message": "m", "reason": "Invalid", "code": 422,
                   "details": {"name": "n", "kind": "Pod", "causes": [{"reason": "FieldValueInvalid", "message": "bad", "field": "spec"}]}}),
        );
    }

    #[test]
    fn layout_is_go_to_protobuf_s() {
        // ListMeta: every non-pointer string, zero or not, in field order; no remainingItemCount.
        let bytes =
            json_to_message(&json!({"resourceVersion": "7"}), message_for("v1", "Status").unwrap().fields[0].message())
                .unwrap();
        assert_eq!(bytes, [0x0a, 0, 0x12, 1, b'7', 0x1a, 0]);
        // A negative int32 takes ten bytes; a map's entries come sorted.
        let status = json_to_message(&json!({"code": -1}), message_for("v1", "Status").unwrap()).unwrap();
        assert!(status
            .windows(11)
            .any(|window| window == [0x30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]));
        let config_map = message_for("v1", "ConfigMap").unwrap();
        let bytes = json_to_message(&json!({"data": {"b": "2", "a": "1"}}), config_map).unwrap();
        let a = bytes.windows(3).position(|window| window == [0x0a, 1, b'a']).unwrap();
        let b = bytes.windows(3).position(|window| window == [0x0a, 1, b'b']).unwrap();
        assert!(a < b);
        // The zero time is an empty message; a timestamp its seconds and zero nanos.
        let time = message_for("v1", "Pod").unwrap().fields[0].message().field(8).unwrap().message();
        assert_eq!(json_to_message(&Value::Null, time).unwrap(), Vec::<u8>::new());
        assert_eq!(json_to_message(&json!("1970-01-01T00:02:00Z"), time).unwrap(), [0x08, 120, 0x10, 0]);
    }

    #[test]
    fn values_of_the_wrong_type_are_errors() {
        let config_map = message_for("v1", "ConfigMap").unwrap();
        assert!(json_to_message(&json!({"data": {"a": 1}}), config_map).is_err());
        assert!(json_to_message(&json!({"metadata": []}), config_map).is_err());
        let deployment = message_for("apps/v1", "Deployment").unwrap();
        assert!(json_to_message(&json!({"spec": {"replicas": 1u64 << 40}}), deployment).is_err());
        assert!(json_to_message(&json!({"metadata": {"creationTimestamp": "yesterday"}}), deployment).is_err());
    }

    impl Field {
        fn message(&self) -> &'static Message {
            match self.value {
                Type::Message(message) => message,
                _ => panic!("{} is not a message", self.json_name),
            }
        }
    }
}
