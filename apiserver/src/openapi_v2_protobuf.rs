//! `/openapi/v2` in the protobuf form kubectl and client-go ask for: gnostic's OpenAPIv2
//! `Document` (github.com/google/gnostic-models `openapiv2/OpenAPIv2.proto`, vendored in
//! `apiserver/proto/`), encoded from the swagger 2.0 JSON document as kube-openapi does it
//! (`ToProtoBinary`: gnostic's `ParseDocument`, then `proto.Marshal`).
//!
//! gnostic's shapes, which differ from the JSON: maps are repeated `Named*` pairs in the JSON's key
//! order (`paths`, `definitions`, `properties`, responses by code); a schema's `type` is a
//! `TypeItem` list and `items` an `ItemsItem` list; `additionalProperties` is a schema or a
//! boolean; a parameter is a `BodyParameter` or one of four `NonBodyParameter` sub-schemas by its
//! `in`; every `x-` key is a `NamedAny` whose `Any.yaml` holds the value as block YAML (gnostic
//! re-marshals the parsed node with its styles cleared), as do `default`, `enum` and `example`.
//! Fields are written in field-number order and proto3 zero values are left out, as Go's
//! marshaler does; a oneof member is written even when it is zero (`additionalProperties: false`).

use serde_json::{Map, Value};

use crate::protobuf_wire::{put_bytes_field, put_key, put_varint_field, WireType};

/// The JSON keys each object may carry, besides `x-` extensions (gnostic's `allowedKeys`); the
/// tests check keel's document uses no other, so nothing is left out of the protobuf silently.
#[cfg(test)]
pub const SCHEMA_KEYS: &[&str] = &[
    "$ref",
    "format",
    "title",
    "description",
    "default",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "enum",
    "additionalProperties",
    "type",
    "items",
    "allOf",
    "properties",
    "discriminator",
    "readOnly",
    "xml",
    "externalDocs",
    "example",
];

/// Keys of a file schema (a response schema of only these keys, with a `type`, is one).
const FILE_SCHEMA_KEYS: &[&str] =
    &["default", "description", "example", "externalDocs", "format", "readOnly", "required", "title", "type"];

/// Encodes a swagger 2.0 document as gnostic's `openapi.v2.Document`.
pub fn encode(document: &Value) -> Vec<u8> {
    let object = document.as_object().expect("a swagger document is an object");
    let mut fields = Fields::default();
    fields.string_of(1, object, "swagger");
    if let Some(Value::Object(info)) = object.get("info") {
        fields.message(2, self::info(info));
    }
    fields.string_of(3, object, "host");
    fields.string_of(4, object, "basePath");
    fields.strings_of(5, object, "schemes");
    fields.strings_of(6, object, "consumes");
    fields.strings_of(7, object, "produces");
    if let Some(Value::Object(paths)) = object.get("paths") {
        fields.message(8, self::paths(paths));
    }
    if let Some(Value::Object(definitions)) = object.get("definitions") {
        fields.message(9, named(1, definitions, |value| schema(as_object(value))));
    }
    if let Some(Value::Object(parameters)) = object.get("parameters") {
        fields.message(10, named(1, parameters, |value| parameter(as_object(value))));
    }
    if let Some(Value::Object(responses)) = object.get("responses") {
        fields.message(11, named(1, responses, |value| response(as_object(value))));
    }
    for requirement in array_of(object, "security") {
        fields.message(12, security_requirement(as_object(requirement)));
    }
    for tag in array_of(object, "tags") {
        let tag = as_object(tag);
        let mut message = Fields::default();
        message.string_of(1, tag, "name");
        message.string_of(2, tag, "description");
        message.external_docs_of(3, tag);
        message.vendor_extensions(4, tag);
        fields.message(14, message);
    }
    fields.external_docs_of(15, object);
    fields.vendor_extensions(16, object);
    fields.0
}

fn info(info: &Map<String, Value>) -> Fields {
    let mut fields = Fields::default();
    fields.string_of(1, info, "title");
    fields.string_of(2, info, "version");
    fields.string_of(3, info, "description");
    fields.string_of(4, info, "termsOfService");
    if let Some(Value::Object(contact)) = info.get("contact") {
        let mut message = Fields::default();
        message.string_of(1, contact, "name");
        message.string_of(2, contact, "url");
        message.string_of(3, contact, "email");
        message.vendor_extensions(4, contact);
        fields.message(5, message);
    }
    if let Some(Value::Object(license)) = info.get("license") {
        let mut message = Fields::default();
        message.string_of(1, license, "name");
        message.string_of(2, license, "url");
        message.vendor_extensions(3, license);
        fields.message(6, message);
    }
    fields.vendor_extensions(7, info);
    fields
}

/// `Paths`: extensions first (field 1), then every `/` key as a `NamedPathItem` (field 2).
fn paths(paths: &Map<String, Value>) -> Fields {
    let mut fields = Fields::default();
    fields.vendor_extensions(1, paths);
    for (path, item) in paths.iter().filter(|(path, _)| path.starts_with('/')) {
        let mut pair = Fields::default();
        pair.string(1, path);
        pair.message(2, path_item(as_object(item)));
        fields.message(2, pair);
    }
    fields
}

fn path_item(item: &Map<String, Value>) -> Fields {
    let mut fields = Fields::default();
    fields.string_of(1, item, "$ref");
    for (number, method) in
        [(2, "get"), (3, "put"), (4, "post"), (5, "delete"), (6, "options"), (7, "head"), (8, "patch")]
    {
        if let Some(Value::Object(operation)) = item.get(method) {
            fields.message(number, self::operation(operation));
        }
    }
    for parameter in array_of(item, "parameters") {
        fields.message(9, parameters_item(as_object(parameter)));
    }
    fields.vendor_extensions(10, item);
    fields
}

fn operation(operation: &Map<String, Value>) -> Fields {
    let mut fields = Fields::default();
    fields.strings_of(1, operation, "tags");
    fields.string_of(2, operation, "summary");
    fields.string_of(3, operation, "description");
    fields.external_docs_of(4, operation);
    fields.string_of(5, operation, "operationId");
    fields.strings_of(6, operation, "produces");
    fields.strings_of(7, operation, "consumes");
    for parameter in array_of(operation, "parameters") {
        fields.message(8, parameters_item(as_object(parameter)));
    }
    if let Some(Value::Object(responses)) = operation.get("responses") {
        let mut message = Fields::default();
        for (code, value) in responses.iter().filter(|(code, _)| !code.starts_with("x-")) {
            let value = as_object(value);
            let mut response_value = Fields::default();
            if value.contains_key("$ref") {
                response_value.message(2, json_reference(value));
            } else {
                response_value.message(1, response(value));
            }
            let mut pair = Fields::default();
            pair.string(1, code);
            pair.message(2, response_value);
            message.message(1, pair);
        }
        message.vendor_extensions(2, responses);
        fields.message(9, message);
    }
    fields.strings_of(10, operation, "schemes");
    fields.bool_of(11, operation, "deprecated");
    for requirement in array_of(operation, "security") {
        fields.message(12, security_requirement(as_object(requirement)));
    }
    fields.vendor_extensions(13, operation);
    fields
}

/// `ParametersItem`: a reference, or a parameter.
fn parameters_item(parameter: &Map<String, Value>) -> Fields {
    let mut fields = Fields::default();
    if parameter.contains_key("$ref") {
        fields.message(2, json_reference(parameter));
    } else {
        fields.message(1, self::parameter(parameter));
    }
    fields
}

fn json_reference(reference: &Map<String, Value>) -> Fields {
    let mut fields = Fields::default();
    fields.string_of(1, reference, "$ref");
    fields.string_of(2, reference, "description");
    fields
}

/// `Parameter`: a `BodyParameter`, or a `NonBodyParameter` holding the sub-schema its `in` names.
fn parameter(parameter: &Map<String, Value>) -> Fields {
    let mut fields = Fields::default();
    let location = parameter.get("in").and_then(Value::as_str).unwrap_or_default();
    if location == "body" {
        let mut body = Fields::default();
        body.string_of(1, parameter, "description");
        body.string_of(2, parameter, "name");
        body.string_of(3, parameter, "in");
        body.bool_of(4, parameter, "required");
        if let Some(Value::Object(schema)) = parameter.get("schema") {
            body.message(5, self::schema(schema));
        }
        body.vendor_extensions(6, parameter);
        fields.message(1, body);
        return fields;
    }
    // Query and formData parameters have `allowEmptyValue` as field 5, which shifts the rest.
    let (oneof_number, allows_empty) = match location {
        "header" => (1, false),
        "formData" => (2, true),
        "query" => (3, true),
        _ => (4, false),
    };
    let mut sub_schema = Fields::default();
    sub_schema.bool_of(1, parameter, "required");
    sub_schema.string_of(2, parameter, "in");
    sub_schema.string_of(3, parameter, "description");
    sub_schema.string_of(4, parameter, "name");
    let first = if allows_empty {
        sub_schema.bool_of(5, parameter, "allowEmptyValue");
        6
    } else {
        5
    };
    sub_schema.primitive_fields(first, parameter);
    sub_schema.vendor_extensions(first + 17, parameter);
    let mut non_body = Fields::default();
    non_body.message(oneof_number, sub_schema);
    fields.message(2, non_body);
    fields
}

fn response(response: &Map<String, Value>) -> Fields {
    let mut fields = Fields::default();
    fields.string_of(1, response, "description");
    if let Some(Value::Object(schema)) = response.get("schema") {
        fields.message(2, schema_item(schema));
    }
    if let Some(Value::Object(headers)) = response.get("headers") {
        fields.message(
            3,
            named(1, headers, |header| {
                let header = as_object(header);
                let mut fields = Fields::default();
                fields.primitive_fields(1, header);
                fields.string_of(18, header, "description");
                fields.vendor_extensions(19, header);
                fields
            }),
        );
    }
    if let Some(Value::Object(examples)) = response.get("examples") {
        fields.message(4, named(1, examples, any));
    }
    fields.vendor_extensions(5, response);
    fields
}

/// `SchemaItem`: gnostic tries `Schema`, then `FileSchema`, and keeps the last that parses, so a
/// schema of only a file schema's keys (with its required `type`) is a file schema.
fn schema_item(schema: &Map<String, Value>) -> Fields {
    let mut fields = Fields::default();
    let file = schema.contains_key("type")
        && schema.keys().all(|key| key.starts_with("x-") || FILE_SCHEMA_KEYS.contains(&key.as_str()));
    if file {
        let mut file_schema = Fields::default();
        file_schema.string_of(1, schema, "format");
        file_schema.string_of(2, schema, "title");
        file_schema.string_of(3, schema, "description");
        file_schema.any_of(4, schema, "default");
        file_schema.strings_of(5, schema, "required");
        file_schema.string_of(6, schema, "type");
        file_schema.bool_of(7, schema, "readOnly");
        file_schema.external_docs_of(8, schema);
        file_schema.any_of(9, schema, "example");
        file_schema.vendor_extensions(10, schema);
        fields.message(2, file_schema);
    } else {
        fields.message(1, self::schema(schema));
    }
    fields
}

fn schema(schema: &Map<String, Value>) -> Fields {
    let mut fields = Fields::default();
    fields.string_of(1, schema, "$ref");
    fields.string_of(2, schema, "format");
    fields.string_of(3, schema, "title");
    fields.string_of(4, schema, "description");
    fields.any_of(5, schema, "default");
    fields.double_of(6, schema, "multipleOf");
    fields.double_of(7, schema, "maximum");
    fields.bool_of(8, schema, "exclusiveMaximum");
    fields.double_of(9, schema, "minimum");
    fields.bool_of(10, schema, "exclusiveMinimum");
    fields.int_of(11, schema, "maxLength");
    fields.int_of(12, schema, "minLength");
    fields.string_of(13, schema, "pattern");
    fields.int_of(14, schema, "maxItems");
    fields.int_of(15, schema, "minItems");
    fields.bool_of(16, schema, "uniqueItems");
    fields.int_of(17, schema, "maxProperties");
    fields.int_of(18, schema, "minProperties");
    fields.strings_of(19, schema, "required");
    fields.anys_of(20, schema, "enum");
    match schema.get("additionalProperties") {
        Some(Value::Object(additional)) => {
            let mut item = Fields::default();
            item.message(1, self::schema(additional));
            fields.message(21, item);
        }
        Some(Value::Bool(allowed)) => {
            let mut item = Fields::default();
            put_varint_field(&mut item.0, 2, u64::from(*allowed));
            fields.message(21, item);
        }
        _ => {}
    }
    match schema.get("type") {
        Some(Value::String(kind)) => {
            let mut item = Fields::default();
            put_bytes_field(&mut item.0, 1, kind.as_bytes());
            fields.message(22, item);
        }
        Some(Value::Array(_)) => {
            let mut item = Fields::default();
            item.strings_of(1, schema, "type");
            fields.message(22, item);
        }
        _ => {}
    }
    match schema.get("items") {
        Some(Value::Object(items)) => {
            let mut item = Fields::default();
            item.message(1, self::schema(items));
            fields.message(23, item);
        }
        Some(Value::Array(items)) => {
            let mut item = Fields::default();
            for items in items {
                item.message(1, self::schema(as_object(items)));
            }
            fields.message(23, item);
        }
        _ => {}
    }
    for all_of in array_of(schema, "allOf") {
        fields.message(24, self::schema(as_object(all_of)));
    }
    if let Some(Value::Object(properties)) = schema.get("properties") {
        fields.message(25, named(1, properties, |value| self::schema(as_object(value))));
    }
    fields.string_of(26, schema, "discriminator");
    fields.bool_of(27, schema, "readOnly");
    if let Some(Value::Object(xml)) = schema.get("xml") {
        let mut message = Fields::default();
        message.string_of(1, xml, "name");
        message.string_of(2, xml, "namespace");
        message.string_of(3, xml, "prefix");
        message.bool_of(4, xml, "attribute");
        message.bool_of(5, xml, "wrapped");
        message.vendor_extensions(6, xml);
        fields.message(28, message);
    }
    fields.external_docs_of(29, schema);
    fields.any_of(30, schema, "example");
    fields.vendor_extensions(31, schema);
    fields
}

/// `SecurityRequirement`: `{name: [scopes]}` as `NamedStringArray` pairs.
fn security_requirement(requirement: &Map<String, Value>) -> Fields {
    named(1, requirement, |scopes| {
        let mut fields = Fields::default();
        for scope in scopes.as_array().into_iter().flatten().filter_map(Value::as_str) {
            put_bytes_field(&mut fields.0, 1, scope.as_bytes());
        }
        fields
    })
}

/// A JSON map as gnostic's repeated `Named*` pairs: `name` is field 1, the value field 2.
fn named(number: u32, map: &Map<String, Value>, value: impl Fn(&Value) -> Fields) -> Fields {
    let mut fields = Fields::default();
    for (name, item) in map {
        let mut pair = Fields::default();
        pair.string(1, name);
        pair.message(2, value(item));
        fields.message(number, pair);
    }
    fields
}

/// gnostic's `Any`: the value as YAML text in field 2.
fn any(value: &Value) -> Fields {
    let mut fields = Fields::default();
    put_bytes_field(&mut fields.0, 2, yaml(value).as_bytes());
    fields
}

fn as_object(value: &Value) -> &Map<String, Value> {
    value.as_object().unwrap_or_else(|| panic!("a swagger object, not {value}"))
}

fn array_of<'a>(object: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    object.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// One message's encoded fields; callers append them in field-number order.
#[derive(Default)]
struct Fields(Vec<u8>);

impl Fields {
    /// A proto3 string: left out when empty.
    fn string(&mut self, number: u32, value: &str) {
        if !value.is_empty() {
            put_bytes_field(&mut self.0, number, value.as_bytes());
        }
    }

    fn string_of(&mut self, number: u32, object: &Map<String, Value>, key: &str) {
        if let Some(Value::String(value)) = object.get(key) {
            self.string(number, value);
        }
    }

    fn strings_of(&mut self, number: u32, object: &Map<String, Value>, key: &str) {
        for value in array_of(object, key).iter().filter_map(Value::as_str) {
            put_bytes_field(&mut self.0, number, value.as_bytes());
        }
    }

    fn bool_of(&mut self, number: u32, object: &Map<String, Value>, key: &str) {
        if object.get(key) == Some(&Value::Bool(true)) {
            put_varint_field(&mut self.0, number, 1);
        }
    }

    fn int_of(&mut self, number: u32, object: &Map<String, Value>, key: &str) {
        if let Some(value) = object.get(key).and_then(Value::as_i64).filter(|value| *value != 0) {
            put_varint_field(&mut self.0, number, value as u64);
        }
    }

    fn double_of(&mut self, number: u32, object: &Map<String, Value>, key: &str) {
        if let Some(value) = object.get(key).and_then(Value::as_f64).filter(|value| *value != 0.0) {
            put_key(&mut self.0, number, WireType::Fixed64);
            self.0.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn any_of(&mut self, number: u32, object: &Map<String, Value>, key: &str) {
        if let Some(value) = object.get(key) {
            self.message(number, any(value));
        }
    }

    fn anys_of(&mut self, number: u32, object: &Map<String, Value>, key: &str) {
        for value in array_of(object, key) {
            self.message(number, any(value));
        }
    }

    fn external_docs_of(&mut self, number: u32, object: &Map<String, Value>) {
        if let Some(Value::Object(docs)) = object.get("externalDocs") {
            let mut message = Fields::default();
            message.string_of(1, docs, "description");
            message.string_of(2, docs, "url");
            message.vendor_extensions(3, docs);
            self.message(number, message);
        }
    }

    /// A set message field: written even when empty, as Go writes a non-nil message.
    fn message(&mut self, number: u32, message: Fields) {
        put_bytes_field(&mut self.0, number, &message.0);
    }

    /// Every `x-` key as a `NamedAny`, in the object's key order.
    fn vendor_extensions(&mut self, number: u32, object: &Map<String, Value>) {
        for (name, value) in object.iter().filter(|(name, _)| name.starts_with("x-")) {
            let mut pair = Fields::default();
            pair.string(1, name);
            pair.message(2, any(value));
            self.message(number, pair);
        }
    }

    /// The fields of a primitive parameter, header or items, numbered from `first` (its `type`)
    /// up to `multipleOf` at `first + 16`; the caller adds what follows.
    fn primitive_fields(&mut self, first: u32, object: &Map<String, Value>) {
        self.string_of(first, object, "type");
        self.string_of(first + 1, object, "format");
        if let Some(Value::Object(items)) = object.get("items") {
            let mut message = Fields::default();
            message.primitive_fields(1, items);
            message.vendor_extensions(18, items);
            self.message(first + 2, message);
        }
        self.string_of(first + 3, object, "collectionFormat");
        self.any_of(first + 4, object, "default");
        self.double_of(first + 5, object, "maximum");
        self.bool_of(first + 6, object, "exclusiveMaximum");
        self.double_of(first + 7, object, "minimum");
        self.bool_of(first + 8, object, "exclusiveMinimum");
        self.int_of(first + 9, object, "maxLength");
        self.int_of(first + 10, object, "minLength");
        self.string_of(first + 11, object, "pattern");
        self.int_of(first + 12, object, "maxItems");
        self.int_of(first + 13, object, "minItems");
        self.bool_of(first + 14, object, "uniqueItems");
        self.anys_of(first + 15, object, "enum");
        self.double_of(first + 16, object, "multipleOf");
    }
}

/// A JSON value as block YAML, laid out as gnostic's yaml.v3 `Marshal` lays it out (four-space
/// indentation, sequences of mappings as `- key: value`), ending in a newline.
pub fn yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => yaml_mapping(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => yaml_sequence(&mut out, items, 0),
        scalar => {
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
    out
}

fn yaml_mapping(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (index, (key, value)) in map.iter().enumerate() {
        // The first key of a mapping inside a sequence item follows its `- `.
        if index > 0 || out.is_empty() || out.ends_with('\n') {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&yaml_scalar(&Value::String(key.clone())));
        out.push(':');
        yaml_nested(out, value, indent + 4);
    }
}

fn yaml_sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        match item {
            Value::Object(map) if !map.is_empty() => yaml_mapping(out, map, indent + 2),
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                yaml_sequence(out, inner, indent + 2);
            }
            scalar => {
                out.push_str(&yaml_scalar(scalar));
                out.push('\n');
            }
        }
    }
}

/// A mapping's value after `key:`: a scalar on the same line, a collection on the lines below.
fn yaml_nested(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            yaml_mapping(out, map, indent);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            yaml_sequence(out, items, indent);
        }
        scalar => {
            out.push(' ');
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

/// A scalar: numbers, booleans and null as written; a string plain when YAML reads it back as
/// the same string, double-quoted (JSON's escapes are YAML's) otherwise.
fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::String(text) if is_plain(text) => text.clone(),
        Value::String(text) => serde_json::to_string(text).expect("a string encodes"),
        Value::Object(_) => "{}".to_string(),
        Value::Array(_) => "[]".to_string(),
        other => other.to_string(),
    }
}

/// Whether a string can be written unquoted: no YAML indicator or reserved word, nothing that
/// reads as another type (numbers, booleans old and new, null), no edge whitespace.
fn is_plain(text: &str) -> bool {
    const RESERVED: &[&str] = &[
        "true", "True", "TRUE", "false", "False", "FALSE", "null", "Null", "NULL", "~", "y", "Y", "yes", "Yes", "YES",
        "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", ".inf", ".Inf", ".INF", "-.inf", ".nan",
        ".NaN", ".NAN",
    ];
    let Some(first) = text.chars().next() else { return false };
    !RESERVED.contains(&text)
        && text.parse::<f64>().is_err()
        && !(first.is_ascii_digit() || first == '.' || first == '+' || first == '-')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ',' | ' '))
        && !text.starts_with(' ')
        && !text.ends_with(' ')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_as_gnostic_writes_it() {
        assert_eq!(yaml(&json!("name")), "name\n");
        assert_eq!(yaml(&json!("merge,retainKeys")), "merge,retainKeys\n");
        assert_eq!(yaml(&json!(true)), "true\n");
        assert_eq!(yaml(&json!("")), "\"\"\n");
        assert_eq!(yaml(&json!("true")), "\"true\"\n");
        assert_eq!(yaml(&json!("80")), "\"80\"\n");
        assert_eq!(yaml(&json!(["containerPort", "protocol"])), "- containerPort\n- protocol\n");
        assert_eq!(
            yaml(&json!([{"group": "", "kind": "Pod", "version": "v1"}])),
            "- group: \"\"\n  kind: Pod\n  version: v1\n"
        );
        assert_eq!(yaml(&json!({"group": "apps", "kind": "Deployment"})), "group: apps\nkind: Deployment\n");
        assert_eq!(yaml(&json!({"a": {"b": ["c"]}})), "a:\n    b:\n        - c\n");
    }

    #[test]
    fn oneofs_keep_their_zero_values() {
        let encoded = schema(as_object(&json!({"type": "object", "additionalProperties": false}))).0;
        // additional_properties (21) holding boolean (2) = false, then type (22) holding "object".
        assert_eq!(&encoded[..5], &[0xaa, 0x01, 0x02, 0x10, 0x00]);
        assert_eq!(&encoded[5..], &[0xb2, 0x01, 0x08, 0x0a, 0x06, b'o', b'b', b'j', b'e', b'c', b't']);
    }
}
