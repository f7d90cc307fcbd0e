//! [`serializes_as`]: whether a typed object encodes to a given JSON value, checked without
//! building that value.
//!
//! A write decodes its body as the k8s-openapi type and encodes it back (`registry.rs`), which
//! drops unknown fields and nulls and rewrites some values (timestamps) as kube-apiserver does.
//! Usually nothing changes, and building the new `Value` (maps, strings) was about a twentieth
//! of a create's CPU (BENCHMARKS.md). The check answers "same" only when `serde_json::to_value`
//! would give a value equal to the given one; anything it does not model answers "differs", and
//! the caller builds the value as before.

use serde::ser::{self, Impossible, Serialize};
use serde_json::{Map, Number, Value};

/// Whether `serde_json::to_value(typed)` would equal `value`.
pub fn serializes_as<T: Serialize + ?Sized>(typed: &T, value: &Value) -> bool {
    typed.serialize(Matcher(value)).is_ok()
}

/// The serialization differs from the value (or uses what the check does not model).
#[derive(Debug)]
pub struct Differs;

impl std::fmt::Display for Differs {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("differs")
    }
}

impl std::error::Error for Differs {}

impl ser::Error for Differs {
    fn custom<M: std::fmt::Display>(_message: M) -> Differs {
        Differs
    }
}

fn check(same: bool) -> Result<(), Differs> {
    if same {
        Ok(())
    } else {
        Err(Differs)
    }
}

fn number(value: &Value, number: Number) -> Result<(), Differs> {
    check(matches!(value, Value::Number(held) if *held == number))
}

/// `serialize_<integer>` methods: the number must be the one `to_value` would write.
macro_rules! numbers {
    ($($method:ident: $type:ty),* $(,)?) => {
        $(fn $method(self, v: $type) -> Result<(), Differs> {
            number(self.0, v.into())
        })*
    };
}

/// `serialize_<scalar>` methods of a key serializer that takes only strings.
macro_rules! refused {
    ($($method:ident: $type:ty),* $(,)?) => {
        $(fn $method(self, _v: $type) -> Result<String, Differs> {
            Err(Differs)
        })*
    };
}

/// The tuple and variant serializers, which the check does not model (k8s-openapi's types do
/// not use them).
macro_rules! tuples_and_variants_refused {
    () => {
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _name: &'static str,
            _index: u32,
            _variant: &'static str,
            _value: &T,
        ) -> Result<Self::Ok, Differs> {
            Err(Differs)
        }
        fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Differs> {
            Err(Differs)
        }
        fn serialize_tuple_struct(
            self,
            _name: &'static str,
            _len: usize,
        ) -> Result<Self::SerializeTupleStruct, Differs> {
            Err(Differs)
        }
        fn serialize_tuple_variant(
            self,
            _name: &'static str,
            _index: u32,
            _variant: &'static str,
            _len: usize,
        ) -> Result<Self::SerializeTupleVariant, Differs> {
            Err(Differs)
        }
        fn serialize_struct_variant(
            self,
            _name: &'static str,
            _index: u32,
            _variant: &'static str,
            _len: usize,
        ) -> Result<Self::SerializeStructVariant, Differs> {
            Err(Differs)
        }
    };
}

struct Matcher<'a>(&'a Value);

impl<'a> ser::Serializer for Matcher<'a> {
    type Ok = ();
    type Error = Differs;
    type SerializeSeq = SeqMatcher<'a>;
    type SerializeTuple = Impossible<(), Differs>;
    type SerializeTupleStruct = Impossible<(), Differs>;
    type SerializeTupleVariant = Impossible<(), Differs>;
    type SerializeMap = MapMatcher<'a>;
    type SerializeStruct = MapMatcher<'a>;
    type SerializeStructVariant = Impossible<(), Differs>;

    tuples_and_variants_refused!();

    fn serialize_bool(self, v: bool) -> Result<(), Differs> {
        check(self.0.as_bool() == Some(v))
    }
    numbers!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64
    );
    fn serialize_f32(self, v: f32) -> Result<(), Differs> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Differs> {
        // As `to_value`: a non-finite float becomes null.
        match Number::from_f64(v) {
            Some(v) => number(self.0, v),
            None => check(self.0.is_null()),
        }
    }
    fn serialize_char(self, v: char) -> Result<(), Differs> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Differs> {
        check(self.0.as_str() == Some(v))
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Differs> {
        Err(Differs)
    }
    fn serialize_none(self) -> Result<(), Differs> {
        check(self.0.is_null())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Differs> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Differs> {
        check(self.0.is_null())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Differs> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<(), Differs> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Result<(), Differs> {
        value.serialize(self)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<SeqMatcher<'a>, Differs> {
        match self.0 {
            Value::Array(items) => Ok(SeqMatcher { items: items.iter() }),
            _ => Err(Differs),
        }
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<MapMatcher<'a>, Differs> {
        match self.0 {
            Value::Object(map) => Ok(MapMatcher { map, matched: 0, key: None, last_map_key: None }),
            _ => Err(Differs),
        }
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<MapMatcher<'a>, Differs> {
        self.serialize_map(None)
    }
}

struct SeqMatcher<'a> {
    items: std::slice::Iter<'a, Value>,
}

impl ser::SerializeSeq for SeqMatcher<'_> {
    type Ok = ();
    type Error = Differs;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Differs> {
        value.serialize(Matcher(self.items.next().ok_or(Differs)?))
    }
    fn end(mut self) -> Result<(), Differs> {
        check(self.items.next().is_none())
    }
}

/// Matches a map or a struct against an object: every entry written must be in the object with
/// a matching value, and as many entries written as the object holds.
struct MapMatcher<'a> {
    map: &'a Map<String, Value>,
    matched: usize,
    /// The key of a map entry whose value comes next.
    key: Option<String>,
    /// Map keys must come in increasing order (as from a `BTreeMap`), so none is counted twice.
    last_map_key: Option<String>,
}

impl MapMatcher<'_> {
    fn entry<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Differs> {
        value.serialize(Matcher(self.map.get(key).ok_or(Differs)?))?;
        self.matched += 1;
        Ok(())
    }
}

impl ser::SerializeMap for MapMatcher<'_> {
    type Ok = ();
    type Error = Differs;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Differs> {
        let key = key.serialize(KeyText)?;
        if self.last_map_key.as_ref().is_some_and(|last| *last >= key) {
            return Err(Differs);
        }
        self.last_map_key = Some(key.clone());
        self.key = Some(key);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Differs> {
        let key = self.key.take().ok_or(Differs)?;
        self.entry(&key, value)
    }
    fn end(self) -> Result<(), Differs> {
        check(self.matched == self.map.len())
    }
}

impl ser::SerializeStruct for MapMatcher<'_> {
    type Ok = ();
    type Error = Differs;

    /// A struct's fields are distinct by construction.
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Differs> {
        self.entry(key, value)
    }
    fn end(self) -> Result<(), Differs> {
        check(self.matched == self.map.len())
    }
}

/// A map key as text; only string keys are modelled.
struct KeyText;

impl ser::Serializer for KeyText {
    type Ok = String;
    type Error = Differs;
    type SerializeSeq = Impossible<String, Differs>;
    type SerializeTuple = Impossible<String, Differs>;
    type SerializeTupleStruct = Impossible<String, Differs>;
    type SerializeTupleVariant = Impossible<String, Differs>;
    type SerializeMap = Impossible<String, Differs>;
    type SerializeStruct = Impossible<String, Differs>;
    type SerializeStructVariant = Impossible<String, Differs>;

    tuples_and_variants_refused!();

    fn serialize_str(self, v: &str) -> Result<String, Differs> {
        Ok(v.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, Differs> {
        value.serialize(self)
    }
    refused!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_f32: f32, serialize_f64: f64, serialize_char: char,
        serialize_bytes: &[u8]
    );
    fn serialize_none(self) -> Result<String, Differs> {
        Err(Differs)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, Differs> {
        Err(Differs)
    }
    fn serialize_unit(self) -> Result<String, Differs> {
        Err(Differs)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, Differs> {
        Err(Differs)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<String, Differs> {
        Err(Differs)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Differs> {
        Err(Differs)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Differs> {
        Err(Differs)
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct, Differs> {
        Err(Differs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
    use serde::de::DeserializeOwned;
    use serde::Deserialize;
    use serde_json::json;

    /// The check agrees with building the value, and a value built from the type always matches.
    fn agrees<T: DeserializeOwned + Serialize>(value: Value) -> bool {
        let typed = T::deserialize(&value).expect("decodes");
        let built = serde_json::to_value(&typed).unwrap();
        assert!(serializes_as(&typed, &built), "{built}");
        let same = serializes_as(&typed, &value);
        assert_eq!(same, built == value, "{value}");
        same
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"},
                         "creationTimestamp": "2026-12-07T10:00:00Z"},
            "spec": {
                "containers": [{
                    "name": "c", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}},
                    "env": [{"name": "A", "value": "1"}],
                }],
                "terminationGracePeriodSeconds": 30, "hostNetwork": false, "volumes": [],
                "tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}],
            },
            "status": {"phase": "Pending"},
        })
    }

    #[test]
    fn a_normal_object_matches() {
        assert!(agrees::<Pod>(pod()));
        assert!(agrees::<ConfigMap>(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": ""}})
        ));
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "d"}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        });
        assert!(agrees::<Deployment>(deployment));
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                             "spec": {"ports": [{"port": 80, "targetPort": "http"}], "selector": {"app": "s"}}});
        assert!(agrees::<Service>(service));
    }

    #[test]
    fn what_the_round_trip_changes_does_not_match() {
        let mut unknown = pod();
        unknown["spec"]["bogus"] = json!(1);
        assert!(!agrees::<Pod>(unknown));
        let mut unknown_in_list = pod();
        unknown_in_list["spec"]["containers"][0]["imag"] = json!("x");
        assert!(!agrees::<Pod>(unknown_in_list));
        let mut null = pod();
        null["spec"]["nodeName"] = Value::Null;
        assert!(!agrees::<Pod>(null));
        // A timestamp in another zone is written back in UTC.
        let mut zoned = pod();
        zoned["metadata"]["creationTimestamp"] = json!("2026-12-07T11:00:00+01:00");
        assert!(!agrees::<Pod>(zoned));
        // A float where the type has an integer decodes to the integer.
        let mut float = pod();
        float["spec"]["terminationGracePeriodSeconds"] = json!(30.0);
        if let Ok(typed) = Pod::deserialize(&float) {
            assert!(!serializes_as(&typed, &float));
        }
        // Secret data is bytes: base64 written back as the type encodes it.
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "aGk="}});
        assert!(agrees::<Secret>(secret));
    }

    #[test]
    fn lists_and_maps_must_match_in_length() {
        let typed = Pod::deserialize(&pod()).unwrap();
        let mut longer = pod();
        longer["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "d", "image": "i"}));
        assert!(!serializes_as(&typed, &longer));
        let mut fewer_labels = pod();
        fewer_labels["metadata"]["labels"].as_object_mut().unwrap().remove("tier");
        assert!(!serializes_as(&typed, &fewer_labels));
        let mut other_label = pod();
        other_label["metadata"]["labels"]["tier"] = json!("back");
        assert!(!serializes_as(&typed, &other_label));
        assert!(!serializes_as(&typed, &json!(null)));
    }

    #[test]
    fn numbers_match_as_to_value_writes_them() {
        assert!(serializes_as(&3_i32, &json!(3)));
        assert!(!serializes_as(&3_i32, &json!(3.0)));
        assert!(serializes_as(&-3_i64, &json!(-3)));
        assert!(serializes_as(&1.5_f64, &json!(1.5)));
        assert!(serializes_as(&f64::NAN, &Value::Null));
        assert!(!serializes_as(&1_u8, &json!("1")));
        assert!(serializes_as(&Some("a"), &json!("a")));
        assert!(serializes_as(&None::<i32>, &Value::Null));
    }
}
