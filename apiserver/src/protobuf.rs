//! Kubernetes' protobuf request bodies (`application/vnd.kubernetes.protobuf`), which client-go's
//! typed clients send and so kubectl's generators do (`kubectl create configmap`, `create
//! deployment`, ...).
//!
//! A body is the 4-byte magic `k8s\0`, then a `runtime.Unknown` envelope: {1: typeMeta
//! {1: apiVersion, 2: kind}, 2: raw, 3: contentEncoding, 4: contentType}, whose `raw` is the
//! object's own message. [`decode`] turns the body into the JSON object the client could have sent
//! (`protobuf_json.rs` converts the message) where the handler reads bodies (`http::read_json`,
//! after routing, so an unserved path is still a 404), so decoding, validation, defaults and
//! storage stay one path for both formats.
//!
//! Responses go the other way ([`encode`], `protobuf_from_json.rs`) when the client's Accept
//! header prefers protobuf (`http::negotiate`): the same envelope, with empty contentEncoding and
//! contentType, as kube-apiserver writes them. A watch in protobuf ([`watch_frame`]) is a stream
//! of frames, each a 4-byte big-endian length and a `metav1.WatchEvent` {1: type, 2: object:
//! `runtime.RawExtension` {1: raw}} whose raw is the enveloped object, magic included; the event
//! itself has neither magic nor envelope (kube's raw serializer and `LengthDelimitedFramer`).

use axum::http::{header, HeaderMap};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::protobuf_from_json::json_to_message;
use crate::protobuf_json::message_to_json;
use crate::protobuf_schema::{message_for, Field, Message, Type};
use crate::protobuf_wire::{malformed, put_bytes_field, put_key, put_varint, Reader, WireType};

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The Content-Type of a protobuf watch.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// The prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// Whether the request's Content-Type is Kubernetes protobuf.
pub fn is_protobuf(headers: &HeaderMap) -> bool {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case(MEDIA_TYPE)
}

/// A protobuf body as the JSON object of its kind, with apiVersion and kind set.
pub fn decode(body: &[u8]) -> Result<Value> {
    let envelope = body.strip_prefix(MAGIC).ok_or_else(|| {
        Error::BadRequest(format!(
            "provided data does not appear to be a protobuf message, expected prefix {:?}",
            MAGIC
        ))
    })?;
    let unknown = Unknown::decode(envelope)?;
    if !unknown.content_encoding.is_empty() {
        return Err(malformed(format!("unsupported content encoding {:?}", unknown.content_encoding)));
    }
    if !unknown.content_type.is_empty() && !unknown.content_type.eq_ignore_ascii_case(MEDIA_TYPE) {
        return Err(malformed(format!("unsupported content type {:?} in the envelope", unknown.content_type)));
    }
    if unknown.kind.is_empty() {
        return Err(Error::BadRequest("Object 'Kind' is missing in the protobuf envelope".into()));
    }
    let message = message_for(&unknown.api_version, &unknown.kind).ok_or_else(|| {
        Error::BadRequest(format!("no kind {:?} is registered for version {:?}", unknown.kind, unknown.api_version))
    })?;
    let mut object = message_to_json(&unknown.raw, message)?;
    let Value::Object(fields) = &mut object else { unreachable!("a served kind's message is an object") };
    fields.insert("apiVersion".into(), json!(unknown.api_version));
    fields.insert("kind".into(), json!(unknown.kind));
    Ok(object)
}

/// An object (apiVersion and kind set) as a protobuf body: the magic, then the envelope.
pub fn encode(object: &Value) -> Result<Bytes> {
    let (api_version, kind, message) = message_of(object)?;
    let raw = json_to_message(object, message)?;
    let type_meta = type_meta(api_version, kind);
    let mut body = Vec::with_capacity(MAGIC.len() + raw.len() + type_meta.len() + 16);
    body.extend_from_slice(MAGIC);
    put_bytes_field(&mut body, 1, &type_meta);
    put_bytes_field(&mut body, 2, &raw);
    put_bytes_field(&mut body, 3, b"");
    put_bytes_field(&mut body, 4, b"");
    Ok(Bytes::from(body))
}

/// A list (`list`: apiVersion, kind and metadata, no items) with `items` as a protobuf body, cut
/// into frames of about `frame_bytes`. Each item is converted on its own and only its bytes are
/// kept, so a LIST of 100k pods holds its protobuf encoding, never 100k decoded objects. The
/// bytes are those of [`encode`] of the whole list: a list message's `metadata` is field 1 and
/// its `items` field 2, so the items follow everything else.
pub fn encode_list(list: &Value, items: impl Iterator<Item = Value>, frame_bytes: usize) -> Result<Vec<Bytes>> {
    let (api_version, kind, message) = message_of(list)?;
    let item_message = match message.field(2) {
        Some(Field { json_name: "items", value: Type::Message(item), .. }) => *item,
        _ => return Err(Error::Internal(format!("{kind} has no items message as its field 2"))),
    };
    let head_fields = json_to_message(list, message)?;
    let mut frames = Vec::new();
    let mut frame = Vec::with_capacity(frame_bytes);
    let mut raw_bytes = head_fields.len();
    for item in items {
        let raw = json_to_message(&item, item_message)?;
        // A frame is sent when the next item would not fit, so it never grows past its
        // allocation (a Bytes keeps a Vec's whole capacity).
        let field_bytes = raw.len() + FIELD_HEAD_BYTES_MAX;
        if !frame.is_empty() && frame.len() + field_bytes > frame_bytes {
            let next = Vec::with_capacity(frame_bytes.max(field_bytes));
            frames.push(Bytes::from(std::mem::replace(&mut frame, next)));
        }
        let before = frame.len();
        put_bytes_field(&mut frame, 2, &raw);
        raw_bytes += frame.len() - before;
    }
    let mut head = Vec::with_capacity(MAGIC.len() + api_version.len() + kind.len() + head_fields.len() + 32);
    head.extend_from_slice(MAGIC);
    put_bytes_field(&mut head, 1, &type_meta(api_version, kind));
    put_key(&mut head, 2, WireType::LengthDelimited);
    put_varint(&mut head, raw_bytes as u64);
    head.extend_from_slice(&head_fields);
    put_bytes_field(&mut frame, 3, b"");
    put_bytes_field(&mut frame, 4, b"");
    frames.insert(0, Bytes::from(head));
    frames.push(Bytes::from(frame));
    Ok(frames)
}

/// An object's apiVersion, kind and the protobuf message of that kind.
fn message_of(object: &Value) -> Result<(&str, &str, &'static Message)> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    let message = message_for(api_version, kind).ok_or_else(|| {
        Error::Internal(format!("no protobuf message is known for kind {kind:?} of version {api_version:?}"))
    })?;
    Ok((api_version, kind, message))
}

/// A field's key and length prefix take at most this many bytes.
const FIELD_HEAD_BYTES_MAX: usize = 1 + 10;

fn type_meta(api_version: &str, kind: &str) -> Vec<u8> {
    let mut type_meta = Vec::with_capacity(api_version.len() + kind.len() + 4);
    put_bytes_field(&mut type_meta, 1, api_version.as_bytes());
    put_bytes_field(&mut type_meta, 2, kind.as_bytes());
    type_meta
}

/// One frame of a protobuf watch: the event of `event_type` (ADDED, ..., BOOKMARK, ERROR) around
/// an object [`encode`]d.
pub fn watch_frame(event_type: &str, encoded_object: &[u8]) -> Bytes {
    let mut raw_extension = Vec::with_capacity(encoded_object.len() + 8);
    put_bytes_field(&mut raw_extension, 1, encoded_object);
    let mut event = Vec::with_capacity(raw_extension.len() + event_type.len() + 8);
    put_bytes_field(&mut event, 1, event_type.as_bytes());
    put_bytes_field(&mut event, 2, &raw_extension);
    let length = u32::try_from(event.len()).expect("a watch event under 4 GiB");
    let mut frame = Vec::with_capacity(4 + event.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&event);
    Bytes::from(frame)
}

/// `runtime.Unknown`, the envelope.
#[derive(Debug, Default)]
struct Unknown {
    api_version: String,
    kind: String,
    raw: Vec<u8>,
    content_encoding: String,
    content_type: String,
}

impl Unknown {
    fn decode(bytes: &[u8]) -> Result<Unknown> {
        let mut unknown = Unknown::default();
        let mut reader = Reader::new(bytes);
        while !reader.is_done() {
            match reader.key()? {
                (1, WireType::LengthDelimited) => {
                    let mut type_meta = Reader::new(reader.length_delimited()?);
                    while !type_meta.is_done() {
                        match type_meta.key()? {
                            (1, WireType::LengthDelimited) => unknown.api_version = text(&mut type_meta, "apiVersion")?,
                            (2, WireType::LengthDelimited) => unknown.kind = text(&mut type_meta, "kind")?,
                            (_, wire_type) => type_meta.skip(wire_type)?,
                        }
                    }
                }
                (2, WireType::LengthDelimited) => unknown.raw = reader.length_delimited()?.to_vec(),
                (3, WireType::LengthDelimited) => unknown.content_encoding = text(&mut reader, "contentEncoding")?,
                (4, WireType::LengthDelimited) => unknown.content_type = text(&mut reader, "contentType")?,
                (number @ 1..=4, wire_type) => {
                    return Err(malformed(format!("wrong wire type {wire_type:?} for field {number} of the envelope")))
                }
                (_, wire_type) => reader.skip(wire_type)?,
            }
        }
        Ok(unknown)
    }
}

fn text(reader: &mut Reader<'_>, name: &str) -> Result<String> {
    String::from_utf8(reader.length_delimited()?.to_vec())
        .map_err(|_| malformed(format!("the envelope's {name} is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    /// Writes protobuf by hand, field by field, as go-to-protobuf's marshalers do.
    #[derive(Debug, Default, Clone)]
    struct Encoder(Vec<u8>);

    impl Encoder {
        fn new() -> Encoder {
            Encoder::default()
        }

        fn raw_varint(&mut self, mut value: u64) {
            while value >= 0x80 {
                self.0.push((value as u8) | 0x80);
                value >>= 7;
            }
            self.0.push(value as u8);
        }

        fn varint(mut self, number: u32, value: u64) -> Encoder {
            self.raw_varint(u64::from(number) << 3);
            self.raw_varint(value);
            self
        }

        fn bytes(mut self, number: u32, bytes: &[u8]) -> Encoder {
            self.raw_varint((u64::from(number) << 3) | 2);
            self.raw_varint(bytes.len() as u64);
            self.0.extend_from_slice(bytes);
            self
        }

        fn string(self, number: u32, text: &str) -> Encoder {
            self.bytes(number, text.as_bytes())
        }

        fn message(self, number: u32, message: Encoder) -> Encoder {
            self.bytes(number, &message.0)
        }

        /// Varints one after another: a packed list's payload.
        fn raw_packed(mut self, values: &[u64]) -> Encoder {
            for value in values {
                self.raw_varint(*value);
            }
            self
        }

        /// A `map<string, ...>` entry; `value` is the string, the bytes or the encoded message.
        fn entry(self, number: u32, key: &str, value: &[u8]) -> Encoder {
            self.message(number, Encoder::new().string(1, key).bytes(2, value))
        }
    }

    fn body(api_version: &str, kind: &str, raw: Encoder) -> Vec<u8> {
        let type_meta = Encoder::new().string(1, api_version).string(2, kind);
        let mut body = MAGIC.to_vec();
        body.extend(Encoder::new().message(1, type_meta).message(2, raw).string(4, MEDIA_TYPE).0);
        body
    }

    fn check(api_version: &str, kind: &str, raw: Encoder, expected: Value) {
        let decoded = decode(&body(api_version, kind, raw)).unwrap();
        assert_eq!(decoded, expected);
        // The result is what the JSON path accepts: the served type decodes it.
        if let Some(info) = registry::RESOURCES.iter().find(|info| info.kind == kind) {
            info.normalized(&decoded).unwrap();
        }
    }

    fn bad_request(body: &[u8]) -> String {
        match decode(body) {
            Err(Error::BadRequest(message)) => message,
            other => panic!("expected BadRequest, got {other:?}"),
        }
    }

    /// Non-pointer fields as go-to-protobuf writes them even when zero: ObjectMeta's strings,
    /// generation, and an empty creationTimestamp.
    fn metadata(name: &str) -> Encoder {
        let mut meta = Encoder::new().string(1, name);
        for number in [2, 3, 4, 5, 6] {
            meta = meta.string(number, "");
        }
        meta.varint(7, 0).message(8, Encoder::new())
    }

    /// A LIST encoded item by item, in frames, is the list encoded whole, and decodes back.
    #[test]
    fn a_list_encoded_item_by_item_is_the_list_encoded_whole() {
        let pod = |index: usize| {
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("p-{index}"), "namespace": "default", "resourceVersion": "12",
                             "labels": {"app": "x".repeat(index % 300)}},
                "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}]}]},
                "status": {"phase": "Pending"},
            })
        };
        let list =
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "12", "continue": "t"}});
        for count in [0, 1, 500] {
            let items: Vec<Value> = (0..count).map(pod).collect();
            let frames = encode_list(&list, items.clone().into_iter(), 4096).unwrap();
            if count == 500 {
                assert!(frames.len() > 10, "{} frames", frames.len());
            }
            let mut whole = list.clone();
            whole["items"] = json!(items);
            let encoded = encode(&whole).unwrap();
            assert_eq!(frames.concat(), encoded.to_vec(), "{count} items");
            let decoded = decode(&encoded).unwrap();
            assert_eq!(decoded["items"].as_array().map_or(0, Vec::len), count);
            assert_eq!(decoded["metadata"]["continue"], "t");
        }
        let not_a_list = json!({"apiVersion": "v1", "kind": "Pod"});
        assert!(encode_list(&not_a_list, std::iter::empty(), 4096).is_err());
    }

    #[test]
    fn configmap_zero_values_are_left_out() {
        let raw = Encoder::new()
            .message(1, metadata("x").entry(11, "app", b""))
            .entry(2, "a", b"b")
            .message(2, Encoder::new().string(1, "empty"));
        let expected = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"app": ""}},
            "data": {"a": "b", "empty": ""},
        });
        check("v1", "ConfigMap", raw, expected);
    }

    #[test]
    fn bytes_are_base64_and_pointer_zeros_are_kept() {
        let raw = Encoder::new()
            .message(1, metadata("s"))
            .entry(2, "p", b"q")
            .entry(2, "binary", &[0, 255])
            .string(3, "Opaque")
            .varint(5, 0);
        let expected = json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"p": "cQ==", "binary": "AP8="}, "type": "Opaque", "immutable": false,
        });
        check("v1", "Secret", raw, expected);
    }

    #[test]
    fn times() {
        let created = Encoder::new().varint(1, 1_700_000_000).varint(2, 999_999_999);
        let raw = Encoder::new().message(1, Encoder::new().string(1, "l").message(8, created)).message(
            2,
            Encoder::new()
                .string(1, "holder")
                .message(3, Encoder::new().varint(1, 0))
                .message(4, Encoder::new().varint(1, 1_700_000_000).varint(2, 123_456_789))
                .varint(5, 0),
        );
        let expected = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            // Time keeps whole seconds; an explicit epoch is a time, an empty Time none.
            "metadata": {"name": "l", "creationTimestamp": "2023-11-14T22:13:20Z"},
            "spec": {
                "holderIdentity": "holder",
                "acquireTime": "1970-01-01T00:00:00.000000Z",
                "renewTime": "2023-11-14T22:13:20.123456Z",
                "leaseTransitions": 0,
            },
        });
        check("coordination.k8s.io/v1", "Lease", raw, expected);
        let out_of_range = Encoder::new().message(1, Encoder::new().message(8, Encoder::new().varint(1, u64::MAX / 2)));
        assert!(bad_request(&body("v1", "ConfigMap", out_of_range)).contains("out of range"));
    }

    #[test]
    fn int_or_string_and_quantities() {
        let port = |name: &str, target: Encoder| {
            Encoder::new().string(1, name).string(2, "TCP").varint(3, 80).message(4, target).varint(5, 0)
        };
        let raw = Encoder::new().message(1, metadata("web")).message(
            2,
            Encoder::new()
                .message(1, port("number", Encoder::new().varint(1, 0).varint(2, 8080)))
                .message(1, port("named", Encoder::new().varint(1, 1).string(3, "http")))
                .message(1, port("zero", Encoder::new().varint(1, 0).varint(2, 0))),
        );
        let expected = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"ports": [
                {"name": "number", "protocol": "TCP", "port": 80, "targetPort": 8080},
                {"name": "named", "protocol": "TCP", "port": 80, "targetPort": "http"},
                {"name": "zero", "protocol": "TCP", "port": 80, "targetPort": 0},
            ]},
        });
        check("v1", "Service", raw, expected);
        let impossible = Encoder::new().message(2, Encoder::new().message(1, port("x", Encoder::new().varint(1, 7))));
        assert!(bad_request(&body("v1", "Service", impossible)).contains("IntOrString"));

        let resources = Encoder::new()
            .entry(1, "cpu", &Encoder::new().string(1, "500m").0)
            .entry(1, "memory", &Encoder::new().string(1, "1Gi").0)
            .entry(2, "cpu", &[]);
        let container = Encoder::new().string(1, "c").string(2, "busybox").message(8, resources);
        let raw = Encoder::new().message(1, metadata("p")).message(2, Encoder::new().message(2, container));
        let expected = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{
                "name": "c", "image": "busybox",
                "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "0"}},
            }]},
        });
        check("v1", "Pod", raw, expected);
    }

    #[test]
    fn deployment_of_kubectl_create() {
        // What `kubectl create deployment d --image=nginx --replicas=0` sends, zero values and
        // empty structs included.
        let template = Encoder::new().message(1, metadata("").entry(11, "app", b"d")).message(
            2,
            Encoder::new()
                .message(2, Encoder::new().string(1, "nginx").string(2, "nginx").message(8, Encoder::new()))
                .message(14, Encoder::new()),
        );
        let spec = Encoder::new()
            .varint(1, 0)
            .message(2, Encoder::new().entry(1, "app", b"d"))
            .message(3, template)
            .message(4, Encoder::new().string(1, ""))
            .varint(5, 0)
            .varint(7, 0);
        let raw = Encoder::new()
            .message(1, metadata("d").entry(11, "app", b"d"))
            .message(2, spec)
            .message(3, Encoder::new().varint(1, 0).varint(2, 0));
        let expected = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"app": "d"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}], "securityContext": {}},
                },
                "strategy": {},
            },
            "status": {},
        });
        check("apps/v1", "Deployment", raw, expected);
    }

    #[test]
    fn inlined_structs_negative_numbers_packed_lists_and_unknown_fields() {
        let volume = Encoder::new().string(1, "scratch").message(2, Encoder::new().message(2, Encoder::new()));
        let config_volume = Encoder::new()
            .string(1, "config")
            .message(2, Encoder::new().message(19, Encoder::new().message(1, Encoder::new().string(1, "settings"))));
        let security = Encoder::new().bytes(4, &Encoder::new().raw_packed(&[5, u64::MAX]).0).varint(4, 7);
        let spec = Encoder::new()
            .message(1, volume)
            .message(1, config_volume)
            .message(2, Encoder::new().string(1, "c").string(2, "busybox"))
            .message(14, security)
            .varint(4, -1i64 as u64)
            .string(999, "a field from a newer Kubernetes");
        let raw = Encoder::new().message(1, metadata("p")).message(2, spec);
        let expected = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {
                "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "config", "configMap": {"name": "settings"}}],
                "containers": [{"name": "c", "image": "busybox"}],
                "securityContext": {"supplementalGroups": [5, -1, 7]},
                "terminationGracePeriodSeconds": -1,
            },
        });
        check("v1", "Pod", raw, expected);
    }

    #[test]
    fn repeated_message_fields_merge() {
        // Protobuf merges a message field that occurs twice.
        let raw = Encoder::new().message(1, Encoder::new().string(1, "x")).message(1, Encoder::new().string(3, "ns"));
        check(
            "v1",
            "ConfigMap",
            raw,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns"}}),
        );
    }

    #[test]
    fn delete_options_of_any_group_version() {
        let raw = Encoder::new().varint(1, 0).string(4, "Foreground").string(5, "All");
        let decoded = decode(&body("apps/v1", "DeleteOptions", raw)).unwrap();
        assert_eq!(
            decoded,
            json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                   "propagationPolicy": "Foreground", "dryRun": ["All"]})
        );
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        assert!(bad_request(b"{\"kind\":\"ConfigMap\"}").contains("expected prefix"));
        assert!(bad_request(&body("v1", "Bogus", Encoder::new())).contains("no kind \"Bogus\""));
        assert!(bad_request(&body("apps/v1", "ConfigMap", Encoder::new())).contains("no kind"));
        let mut no_kind = MAGIC.to_vec();
        no_kind.extend(Encoder::new().message(2, Encoder::new()).0);
        assert!(bad_request(&no_kind).contains("Kind"));
        // Cut short or with any one bit flipped, a body decodes or is refused, never panics.
        let valid =
            body("v1", "Pod", Encoder::new().message(1, metadata("x")).message(2, Encoder::new().varint(4, 30)));
        for cut in 0..valid.len() {
            let _ = decode(&valid[..cut]);
        }
        for bit in 0..valid.len() * 8 {
            let mut flipped = valid.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let _ = decode(&flipped);
        }
        let truncated = body("v1", "ConfigMap", Encoder::new().message(1, metadata("x")));
        assert!(bad_request(&truncated[..truncated.len() - 20]).contains("unexpected end"));
        let wrong_wire_type = Encoder::new().message(1, Encoder::new().varint(1, 5));
        assert!(bad_request(&body("v1", "ConfigMap", wrong_wire_type)).contains("wrong wire type"));
        let bad_utf8 = Encoder::new().message(1, Encoder::new().bytes(1, &[0xff, 0xfe]));
        assert!(bad_request(&body("v1", "ConfigMap", bad_utf8)).contains("UTF-8"));
        let mut gzipped = MAGIC.to_vec();
        gzipped.extend(
            Encoder::new()
                .message(1, Encoder::new().string(1, "v1").string(2, "ConfigMap"))
                .bytes(2, b"")
                .string(3, "gzip")
                .0,
        );
        assert!(bad_request(&gzipped).contains("content encoding"));
        let bad_fields = Encoder::new()
            .message(1, Encoder::new().message(17, Encoder::new().message(7, Encoder::new().bytes(1, b"{"))));
        assert!(bad_request(&body("v1", "ConfigMap", bad_fields)).contains("FieldsV1"));
    }

    /// A differential check against upstream's round-trip fixtures, each object both as JSON and
    #[test]
    fn encoded_objects_decode_back() {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
        let body = encode(&object).unwrap();
        assert!(body.starts_with(b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12"), "{body:?}");
        assert!(body.ends_with(b"\x1a\x00\x22\x00"), "empty contentEncoding and contentType: {body:?}");
        assert_eq!(decode(&body).unwrap(), object);
        let list = json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {"resourceVersion": "9"},
                          "items": [{"metadata": {"name": "d"}}]});
        let back = decode(&encode(&list).unwrap()).unwrap();
        assert_eq!(
            (&back["metadata"], &back["items"][0]["metadata"]),
            (&list["metadata"], &list["items"][0]["metadata"])
        );
        assert!(matches!(encode(&json!({"apiVersion": "v1", "kind": "Table"})), Err(Error::Internal(_))));
    }

    #[test]
    fn watch_frames_are_length_prefixed_watch_events() {
        let object = encode(&json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 410})).unwrap();
        let frame = watch_frame("ERROR", &object);
        let length = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(length, frame.len() - 4);
        let mut event = Reader::new(&frame[4..]);
        assert_eq!(event.key().unwrap(), (1, WireType::LengthDelimited));
        assert_eq!(event.length_delimited().unwrap(), b"ERROR");
        assert_eq!(event.key().unwrap(), (2, WireType::LengthDelimited));
        let mut raw_extension = Reader::new(event.length_delimited().unwrap());
        assert!(event.is_done());
        assert_eq!(raw_extension.key().unwrap(), (1, WireType::LengthDelimited));
        assert_eq!(raw_extension.length_delimited().unwrap(), &object[..]);
        assert_eq!(decode(&object).unwrap()["code"], 410);
    }

    /// Every served kind encodes to exactly the bytes kube-apiserver writes: k8s.io/api's fixtures
    /// hold one object both as JSON and as protobuf (see `upstream_fixtures`). Run with
    /// `KEEL_K8S_API_TESTDATA=.../testdata/HEAD cargo nextest run -p apiserver --run-ignored only
    /// upstream_fixtures`.
    #[test]
    #[ignore = "needs k8s.io/api's testdata directory in KEEL_K8S_API_TESTDATA"]
    fn upstream_fixtures_encode_to_the_same_bytes() {
        let directory = std::env::var("KEEL_K8S_API_TESTDATA").expect("KEEL_K8S_API_TESTDATA is set");
        let mut stems: Vec<String> = registry::RESOURCES
            .iter()
            .map(|info| {
                let group = if info.group.is_empty() { "core" } else { info.group };
                format!("{directory}/{group}.{}.{}", info.version, info.kind)
            })
            .collect();
        stems.push(format!("{directory}/autoscaling.v1.Scale"));
        for stem in stems {
            let protobuf = std::fs::read(format!("{stem}.pb")).unwrap_or_else(|error| panic!("{stem}.pb: {error}"));
            let json: Value = serde_json::from_slice(&std::fs::read(format!("{stem}.json")).unwrap()).unwrap();
            let encoded = encode(&json).unwrap_or_else(|error| panic!("{stem}: {error}"));
            if encoded[..] != protobuf[..] {
                let first = encoded.iter().zip(&protobuf).position(|(ours, theirs)| ours != theirs);
                panic!("{stem}: {} bytes against {}, first difference at {first:?}", encoded.len(), protobuf.len());
            }
        }
    }

    /// as protobuf (k8s.io/api's `testdata/HEAD` at the served version, not kept in this
    /// repository): `KEEL_K8S_API_TESTDATA=.../testdata/HEAD cargo nextest run -p apiserver
    /// --run-ignored only upstream_fixtures`. Both forms, decoded through the served type, must
    /// be equal.
    #[test]
    #[ignore = "needs k8s.io/api's testdata directory in KEEL_K8S_API_TESTDATA"]
    fn upstream_fixtures() {
        let directory = std::env::var("KEEL_K8S_API_TESTDATA").expect("KEEL_K8S_API_TESTDATA is set");
        for info in registry::RESOURCES {
            let group = if info.group.is_empty() { "core" } else { info.group };
            let stem = format!("{directory}/{group}.{}.{}", info.version, info.kind);
            let protobuf = std::fs::read(format!("{stem}.pb")).unwrap_or_else(|error| panic!("{stem}.pb: {error}"));
            let json: Value = serde_json::from_slice(&std::fs::read(format!("{stem}.json")).unwrap()).unwrap();
            let from_protobuf = info.normalized(&decode(&protobuf).unwrap()).unwrap();
            let from_json = info.normalized(&json).unwrap();
            assert_eq!(from_protobuf, from_json, "{stem}");
        }
        let scale = |value: Value| {
            let typed: k8s_openapi::api::autoscaling::v1::Scale = serde_json::from_value(value).unwrap();
            serde_json::to_value(typed).unwrap()
        };
        let stem = format!("{directory}/autoscaling.v1.Scale");
        let from_protobuf = scale(decode(&std::fs::read(format!("{stem}.pb")).unwrap()).unwrap());
        let from_json = scale(serde_json::from_slice(&std::fs::read(format!("{stem}.json")).unwrap()).unwrap());
        assert_eq!(from_protobuf, from_json, "{stem}");
    }
}
