//! HTTP plumbing shared by the handlers: JSON answers, request bodies with their size limit,
//! query parameters, and what the client's Accept header asks for.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::protobuf;

/// An object (apiVersion and kind set) as the client negotiated it: protobuf for
/// [`Output::Protobuf`], JSON otherwise (a Table's caller has made the Table already).
pub fn response_as(output: Output, code: StatusCode, value: &Value) -> Response {
    match output {
        Output::Protobuf => protobuf_response(code, value),
        Output::Json | Output::Table(..) | Output::Metadata(..) => json_response(code, value),
    }
}

/// An object as a Kubernetes protobuf body. One the schema cannot carry is a server error (in
/// JSON: it cannot be protobuf either).
pub fn protobuf_response(code: StatusCode, value: &Value) -> Response {
    match protobuf::encode(value) {
        Ok(body) => protobuf_body_response(code, Body::from(body)),
        Err(error) => {
            tracing::warn!(%error, "a response could not be encoded as protobuf");
            json_response(error.code(), &error.status())
        }
    }
}

pub fn protobuf_body_response(code: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = code;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(protobuf::MEDIA_TYPE));
    response
}

/// The largest request body accepted (kube-apiserver's limit is 3 MiB too).
pub const BODY_BYTES_MAX: usize = 3 * 1024 * 1024;

pub fn json_response(code: StatusCode, value: &Value) -> Response {
    bytes_response(code, Bytes::from(serde_json::to_vec(value).expect("a JSON value encodes")))
}

pub fn bytes_response(code: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Reads a request body, refusing one over [`BODY_BYTES_MAX`] with RequestEntityTooLarge.
pub async fn read_body(body: Body) -> Result<Bytes> {
    axum::body::to_bytes(body, BODY_BYTES_MAX).await.map_err(|error| {
        let too_large = std::error::Error::source(&error)
            .is_some_and(|source| source.to_string().contains("length limit"))
            || error.to_string().contains("length limit");
        if too_large {
            Error::RequestEntityTooLarge(format!("the request body exceeds the limit of {BODY_BYTES_MAX} bytes"))
        } else {
            Error::BadRequest(format!("reading the request body: {error}"))
        }
    })
}

/// Refuses an object body in a format keel does not decode yet (CBOR, YAML).
pub fn check_json_body(headers: &HeaderMap) -> Result<()> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if matches!(media_type, "" | "application/json" | "*/*") || protobuf::is_protobuf(headers) {
        return Ok(());
    }
    Err(Error::UnsupportedMediaType(format!(
        "the body of the request was in an unknown format - accepted media types include: application/json, \
         {} (keel does not decode {media_type} yet)",
        protobuf::MEDIA_TYPE
    )))
}

/// A request body as JSON: as it came, or decoded from Kubernetes protobuf (`protobuf.rs`).
pub async fn read_json(headers: &HeaderMap, body: Body) -> Result<Bytes> {
    let bytes = read_body(body).await?;
    if bytes.is_empty() || !protobuf::is_protobuf(headers) {
        return Ok(bytes);
    }
    let value = protobuf::decode(&bytes)?;
    Ok(Bytes::from(serde_json::to_vec(&value).expect("a JSON value encodes")))
}

/// An object body, JSON or Kubernetes protobuf, as a JSON object.
pub async fn read_object(headers: &HeaderMap, body: Body) -> Result<Value> {
    check_json_body(headers)?;
    parse_object(&read_json(headers, body).await?)
}

/// Decodes a JSON object body.
pub fn parse_object(body: &[u8]) -> Result<Value> {
    if body.is_empty() {
        return Err(Error::BadRequest("the request body is empty".into()));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| Error::BadRequest(format!("the body of the request could not be decoded: {error}")))?;
    if !value.is_object() {
        return Err(Error::BadRequest("the body of the request is not a JSON object".into()));
    }
    Ok(value)
}

/// Query parameters, first value of each.
#[derive(Debug, Default, Clone)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn from_query(query: Option<&str>) -> Params {
        let mut params = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.entry(decode_component(key)).or_insert_with(|| decode_component(value));
        }
        Params(params)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|value| !value.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    pub fn number(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(text) => {
                text.parse().map(Some).map_err(|_| Error::BadRequest(format!("{key}: {text:?} is not a number")))
            }
        }
    }
}

/// Percent-decoding, with `+` as a space (form encoding, as Go's url.ParseQuery reads it).
fn decode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a Table row carries besides its cells (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// The representation the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    /// Kubernetes protobuf (`protobuf.rs`); Tables stay JSON, as kube-apiserver's do.
    Protobuf,
    Table(IncludeObject, MetaVersion),
    /// `as=PartialObjectMetadata` or `as=PartialObjectMetadataList` (meta.k8s.io v1 or v1beta1,
    /// JSON only): each object as its metadata alone, what client-go's and kube's metadata
    /// clients and informers ask for.
    Metadata(MetadataKind, MetaVersion),
}

/// The meta.k8s.io version a Table or PartialObjectMetadata was asked in: kube-apiserver
/// answers in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaVersion {
    V1,
    V1beta1,
}

impl MetaVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            MetaVersion::V1 => "meta.k8s.io/v1",
            MetaVersion::V1beta1 => "meta.k8s.io/v1beta1",
        }
    }
}

/// The PartialObjectMetadata kind a client asked for: one object, or a list of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataKind {
    Object,
    List,
}

impl Output {
    /// This output, if it fits an answer that is a list (LIST, DeleteCollection) or one object
    /// (GET, WATCH events, writes). kube-apiserver answers 406 to a PartialObjectMetadata kind
    /// that does not fit; keel does so before acting, where kube-apiserver acts first.
    pub fn for_answer(self, list: bool) -> Result<Output> {
        match self {
            Output::Metadata(MetadataKind::List, _) if !list => Err(Error::NotAcceptable(
                "you requested PartialObjectMetadataList, but the requested object is not a list".to_string(),
            )),
            Output::Metadata(MetadataKind::Object, _) if list => Err(Error::NotAcceptable(
                "you requested PartialObjectMetadata, but the requested object is a list".to_string(),
            )),
            output => Ok(output),
        }
    }
}

/// The media types keel answers in, in kube-apiserver's order of preference (JSON first, so `*/*`
/// is JSON).
const SERVED_MEDIA_TYPES: [(&str, &str); 2] = [("application", "json"), ("application", "vnd.kubernetes.protobuf")];

/// One media range of an Accept header.
#[derive(Debug)]
struct AcceptClause<'a> {
    media_type: String,
    subtype: String,
    quality: f32,
    parameters: HashMap<&'a str, &'a str>,
}

/// The clauses of an Accept header, most preferred first: by quality, then specific types before
/// wildcards, in the header's order otherwise (goautoneg's `ParseAccept`, which kube-apiserver
/// uses). A clause without a `type/subtype` is skipped.
fn parse_accept(accept: &str) -> Vec<AcceptClause<'_>> {
    let mut clauses = Vec::new();
    for entry in accept.split(',') {
        let mut parts = entry.split(';');
        let range = parts.next().unwrap_or("").trim();
        let (media_type, subtype) = match range.split_once('/') {
            Some((media_type, subtype)) if !subtype.contains('/') => (media_type.trim(), subtype.trim()),
            None if range == "*" => ("*", "*"),
            _ => continue,
        };
        let mut clause = AcceptClause {
            media_type: media_type.to_ascii_lowercase(),
            subtype: subtype.to_ascii_lowercase(),
            quality: 1.0,
            parameters: HashMap::new(),
        };
        for parameter in parts {
            let Some((key, value)) = parameter.split_once('=') else { continue };
            if key.trim() == "q" {
                clause.quality = value.trim().parse().unwrap_or(0.0);
            } else {
                clause.parameters.insert(key.trim(), value.trim());
            }
        }
        clauses.push(clause);
    }
    clauses.sort_by(|a, b| {
        b.quality
            .total_cmp(&a.quality)
            .then((a.media_type == "*").cmp(&(b.media_type == "*")))
            .then((a.subtype == "*").cmp(&(b.subtype == "*")))
    });
    clauses
}

/// Reads the Accept header as kube-apiserver's negotiation does: the first clause, in preference
/// order, that a served media type matches and whose parameters can be served wins. `as=Table`
/// (meta.k8s.io v1 or v1beta1) is served in JSON only; a protobuf Table clause is passed over, as
/// is a protobuf PartialObjectMetadata clause, any other `as=` conversion and a `stream=` other
/// than `watch`. No header is JSON; nothing acceptable is 406. Whether a PartialObjectMetadata
/// kind fits the answer is [`Output::for_answer`]'s question.
pub fn negotiate(headers: &HeaderMap, params: &Params) -> Result<Output> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok()) else {
        return Ok(Output::Json);
    };
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    for clause in parse_accept(accept) {
        for (media_type, subtype) in SERVED_MEDIA_TYPES {
            let matches = (clause.media_type == media_type && (clause.subtype == subtype || clause.subtype == "*"))
                || (clause.media_type == "*" && clause.subtype == "*");
            if !matches {
                continue;
            }
            if clause.parameters.get("stream").is_some_and(|stream| !stream.is_empty() && *stream != "watch") {
                continue;
            }
            let json = subtype == "json";
            // Tables and PartialObjectMetadata are meta.k8s.io v1 or v1beta1, in JSON.
            let meta_version = match (clause.parameters.get("g").copied(), clause.parameters.get("v").copied()) {
                (Some("meta.k8s.io"), Some("v1")) if json => Some(MetaVersion::V1),
                (Some("meta.k8s.io"), Some("v1beta1")) if json => Some(MetaVersion::V1beta1),
                _ => None,
            };
            match (clause.parameters.get("as").copied(), meta_version) {
                (None, _) => return Ok(if json { Output::Json } else { Output::Protobuf }),
                (Some("PartialObjectMetadata"), Some(version)) => {
                    return Ok(Output::Metadata(MetadataKind::Object, version))
                }
                (Some("PartialObjectMetadataList"), Some(version)) => {
                    return Ok(Output::Metadata(MetadataKind::List, version))
                }
                (Some("Table"), Some(version)) => {
                    let include = match params.get("includeObject") {
                        Some("None") => IncludeObject::None,
                        Some("Object") => IncludeObject::Object,
                        _ => IncludeObject::Metadata,
                    };
                    return Ok(Output::Table(include, version));
                }
                _ => {}
            }
        }
    }
    Err(Error::NotAcceptable(format!(
        "only the following media types are accepted: application/json, {} (asked for {accept})",
        protobuf::MEDIA_TYPE
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metadata_kind_must_fit_the_answer() {
        let object = Output::Metadata(MetadataKind::Object, MetaVersion::V1);
        let list = Output::Metadata(MetadataKind::List, MetaVersion::V1beta1);
        assert_eq!(object.for_answer(false).unwrap(), object);
        assert_eq!(list.for_answer(true).unwrap(), list);
        assert!(matches!(object.for_answer(true), Err(Error::NotAcceptable(_))));
        assert!(matches!(list.for_answer(false), Err(Error::NotAcceptable(_))));
        assert_eq!(Output::Json.for_answer(true).unwrap(), Output::Json);
    }

    #[test]
    fn query_parameters_are_decoded() {
        let params = Params::from_query(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&limit=5&watch=true&empty="));
        assert_eq!(params.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(params.number("limit").unwrap(), Some(5));
        assert!(params.flag("watch"));
        assert_eq!(params.get("empty"), None);
    }

    #[test]
    fn accept_negotiation() {
        let mut headers = HeaderMap::new();
        let params = Params::default();
        assert_eq!(negotiate(&headers, &params).unwrap(), Output::Json);
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            ),
        );
        assert_eq!(negotiate(&headers, &params).unwrap(), Output::Table(IncludeObject::Metadata, MetaVersion::V1));
        // client-go's typed clients list JSON after protobuf, for objects and for watches.
        let check = |accept: &'static str, expected: Option<Output>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
            let found = negotiate(&headers, &params);
            match expected {
                Some(output) => assert_eq!(found.unwrap(), output, "{accept}"),
                None => assert!(matches!(found, Err(Error::NotAcceptable(_))), "{accept}: {found:?}"),
            }
        };
        check("application/vnd.kubernetes.protobuf,application/json", Some(Output::Protobuf));
        check("application/vnd.kubernetes.protobuf;stream=watch,application/json", Some(Output::Protobuf));
        check("application/vnd.kubernetes.protobuf", Some(Output::Protobuf));
        check("application/json,application/vnd.kubernetes.protobuf", Some(Output::Json));
        // Quality values reorder; wildcards come after specific types of the same quality.
        check("application/json;q=0.5,application/vnd.kubernetes.protobuf", Some(Output::Protobuf));
        check("application/vnd.kubernetes.protobuf;q=0.9,application/json", Some(Output::Json));
        check("*/*,application/vnd.kubernetes.protobuf", Some(Output::Protobuf));
        check("*/*", Some(Output::Json));
        check("application/*", Some(Output::Json));
        check("*", Some(Output::Json));
        // A Table is JSON only: the protobuf Table clause is passed over.
        check("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json", Some(Output::Json));
        check("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io", None);
        check(
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io",
            Some(Output::Table(IncludeObject::Metadata, MetaVersion::V1)),
        );
        // The version asked for is the version answered.
        check(
            "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io",
            Some(Output::Table(IncludeObject::Metadata, MetaVersion::V1beta1)),
        );
        check(
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1beta1",
            Some(Output::Metadata(MetadataKind::List, MetaVersion::V1beta1)),
        );
        check("application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;v=v1;g=meta.k8s.io", None);
        // What client-go's metadata client sends: the protobuf clause is passed over.
        let metadata_client = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,\
                               application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        check(metadata_client, Some(Output::Metadata(MetadataKind::List, MetaVersion::V1)));
        check(
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
            Some(Output::Metadata(MetadataKind::Object, MetaVersion::V1)),
        );
        check("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v2", None);
        check("application/vnd.kubernetes.protobuf;stream=other", None);
        check("application/yaml", None);
        check("text/html", None);
    }
}
