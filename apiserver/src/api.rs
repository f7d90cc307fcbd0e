//! The one HTTP handler: parses the path (`route.rs`) and runs the verb on the resource the
//! registry table names. Every served type goes through the same code.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::aggregated_discovery::{self, Root};
use crate::delete_options::DeleteOptions;
use crate::error::{Error, Result};
use crate::http::{self, Output, Params};
use crate::patch::PatchType;
use crate::route::{self, ResourcePath, Route};
use crate::state::ApiState;
use crate::writer::{self, Part, WriteOptions, Written};
use crate::{apply, binding, deletion, discovery, list, object, openapi, openapi_v2, patch, scale, table, watch_http};

pub async fn handle(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let params = Params::from_query(parts.uri.query());
    let path = parts.uri.path().to_string();
    match serve(&state, &parts.method, &path, &parts.headers, &params, body).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(method = %parts.method, path, %error, "request failed");
            error_response(error, &parts.headers, &params)
        }
    }
}

/// An error's Status, in protobuf when the client negotiated it (kube-apiserver answers errors in
/// the negotiated format too), else in JSON: a client whose Accept header nothing satisfies gets
/// its 406 in JSON.
fn error_response(error: Error, headers: &HeaderMap, params: &Params) -> Response {
    match http::negotiate(headers, params) {
        Ok(Output::Protobuf) => {
            if error.code().is_server_error() {
                tracing::warn!(%error, "request failed");
            }
            http::protobuf_response(error.code(), &error.status())
        }
        _ => error.into_response(),
    }
}

fn not_found(headers: &HeaderMap) -> Response {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the server could not find the requested resource", "reason": "NotFound",
        "details": {}, "code": 404,
    });
    let output = http::negotiate(headers, &Params::default()).unwrap_or(Output::Json);
    http::response_as(output, StatusCode::NOT_FOUND, &status)
}

fn ok(value: Value) -> Result<Response> {
    Ok(http::json_response(StatusCode::OK, &value))
}

async fn serve(
    state: &ApiState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    params: &Params,
    body: Body,
) -> Result<Response> {
    let read_only = || {
        if method == Method::GET || method == Method::HEAD {
            Ok(())
        } else {
            Err(Error::MethodNotAllowed(format!("{method} is not supported on {path}")))
        }
    };
    match route::parse(path) {
        Route::CoreVersions => {
            read_only()?;
            if let Some(version) = aggregated_discovery::negotiate(headers) {
                return Ok(aggregated_discovery::serve(Root::Core, version, headers));
            }
            ok(discovery::core_versions(&state.server_address))
        }
        Route::Groups => {
            read_only()?;
            if let Some(version) = aggregated_discovery::negotiate(headers) {
                return Ok(aggregated_discovery::serve(Root::Groups, version, headers));
            }
            ok(discovery::groups())
        }
        Route::Group(group) => discovery::group(&group).map_or_else(|| Ok(not_found(headers)), ok),
        Route::Resources { group, version } => {
            discovery::resources(&group, version.as_str()).map_or_else(|| Ok(not_found(headers)), ok)
        }
        Route::Version => ok(discovery::version()),
        Route::Health(_) => Ok((StatusCode::OK, "ok").into_response()),
        Route::OpenApiV3Root => {
            read_only()?;
            openapi::serve_root(headers)
        }
        Route::OpenApiV3 { group, version } => {
            read_only()?;
            openapi::serve_document(&group, &version, headers, params).unwrap_or_else(|| Ok(not_found(headers)))
        }
        Route::OpenApiV2 => {
            read_only()?;
            openapi_v2::serve(headers)
        }
        Route::UnknownResource(_) | Route::NotFound => Ok(not_found(headers)),
        Route::Resource(resource) => serve_resource(state, method, &resource, headers, params, body).await,
    }
}

fn written(written: Written, info: &crate::registry::ResourceInfo, output: Output) -> Response {
    let mut response = match written.json {
        Some(json) if output == Output::Json => http::bytes_response(written.code, json),
        _ if written.body["kind"] == "Status" => http::response_as(output, written.code, &written.body),
        _ => list::render_object(info, written.body, output, written.code),
    };
    for warning in written.warnings {
        let text = format!("299 - {}", serde_json::to_string(&warning).expect("a string encodes"));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append("Warning", value);
        }
    }
    response
}

async fn serve_resource(
    state: &ApiState,
    method: &Method,
    resource: &ResourcePath,
    headers: &HeaderMap,
    params: &Params,
    body: Body,
) -> Result<Response> {
    let info = resource.info;
    let answers_list =
        resource.name.is_none() && ((*method == Method::GET && !params.flag("watch")) || *method == Method::DELETE);
    let output = http::negotiate(headers, params)?.for_answer(answers_list)?;
    let namespace = resource.namespace.as_deref();
    if info.namespaced && namespace.is_none() && (resource.name.is_some() || *method != Method::GET) {
        return Err(Error::MethodNotAllowed(format!(
            "{method} on {} needs a namespace in the path (/namespaces/NAMESPACE/{})",
            info.plural, info.plural
        )));
    }
    let subresource = resource.subresource.as_deref();
    let Some(name) = resource.name.as_deref() else {
        return match *method {
            Method::GET if params.flag("watch") => watch_http::watch(state, info, namespace, params, output).await,
            Method::GET => list::list(state, info, namespace, params, output).await,
            Method::POST => {
                let value = http::read_object(headers, body).await?;
                let options = WriteOptions::from_request(params, headers, method)?;
                Ok(written(writer::create(state, info, namespace, value, options).await?, info, output))
            }
            Method::DELETE => {
                let options = DeleteOptions::parse(&http::read_json(headers, body).await?, params)?;
                delete_collection(state, info, namespace, params, &options, output).await
            }
            _ => Err(Error::MethodNotAllowed(format!("{method} is not supported on a collection"))),
        };
    };
    match subresource {
        None => {}
        Some("status") if info.status_subresource => {}
        // A namespace's `/finalize` is served for PUT only, as by kube-apiserver.
        Some("finalize") if info.kind == "Namespace" && info.group.is_empty() && *method == Method::PUT => {}
        Some("finalize") if info.kind == "Namespace" && info.group.is_empty() => {
            return Err(Error::MethodNotAllowed(format!("{method} is not supported on namespaces/finalize")));
        }
        Some("scale") if info.scale_subresource => {
            return serve_scale(state, method, resource, name, headers, params, body).await
        }
        Some("binding") if info.kind == "Pod" && info.group.is_empty() => {
            return binding::serve(state, method, resource, headers, params, body).await
        }
        Some(_) => return Ok(not_found(headers)),
    }
    let part = match subresource {
        Some("status") => Part::Status,
        Some("finalize") => Part::Finalize,
        _ => Part::Main,
    };
    match *method {
        Method::GET => {
            let object = list::get(state, info, namespace, name, params).await?;
            Ok(list::render_object(info, object, output, StatusCode::OK))
        }
        Method::PUT => {
            let value = http::read_object(headers, body).await?;
            let options = WriteOptions::from_request(params, headers, method)?;
            Ok(written(writer::update(state, info, namespace, name, value, part, options).await?, info, output))
        }
        Method::PATCH => {
            let patch_type = patch::patch_type(headers, params)?;
            let patch_body = http::read_body(body).await?;
            let options = WriteOptions::from_request(params, headers, method)?;
            if patch_type == PatchType::Apply {
                let applied = apply::apply(state, info, namespace, name, part, &patch_body, params, options).await?;
                return Ok(written(applied, info, output));
            }
            let mut change = |current: Value| patch::apply(patch_type, &current, &patch_body);
            let written_object =
                writer::read_modify_write(state, info, namespace, name, part, options, &mut change).await?;
            Ok(written(written_object, info, output))
        }
        Method::DELETE if subresource.is_none() => {
            let options = DeleteOptions::parse(&http::read_json(headers, body).await?, params)?;
            Ok(written(deletion::delete(state, info, namespace, name, &options).await?, info, output))
        }
        _ => Err(Error::MethodNotAllowed(format!("{method} is not supported on {}", info.plural))),
    }
}

async fn serve_scale(
    state: &ApiState,
    method: &Method,
    resource: &ResourcePath,
    name: &str,
    headers: &HeaderMap,
    params: &Params,
    body: Body,
) -> Result<Response> {
    let info = resource.info;
    let namespace = resource.namespace.as_deref();
    let output = http::negotiate(headers, params)?.for_answer(false)?;
    let answer = |scale: Value| Ok(http::response_as(output, StatusCode::OK, &scale));
    let scaled = match *method {
        Method::GET => return answer(scale::to_scale(&list::get(state, info, namespace, name, params).await?)),
        Method::PUT => {
            let wanted = http::read_object(headers, body).await?;
            let options = WriteOptions::from_request(params, headers, method)?;
            let mut change = |current: Value| scale::apply_scale(current, &wanted).map_err(Error::BadRequest);
            writer::read_modify_write(state, info, namespace, name, Part::Scale, options, &mut change).await?
        }
        Method::PATCH => {
            let patch_type = patch::patch_type(headers, params)?;
            let patch_body = http::read_body(body).await?;
            let options = WriteOptions::from_request(params, headers, method)?;
            let mut change = |current: Value| {
                let wanted = patch::apply(patch_type, &scale::to_scale(&current), &patch_body)?;
                scale::apply_scale(current, &wanted).map_err(Error::BadRequest)
            };
            writer::read_modify_write(state, info, namespace, name, Part::Scale, options, &mut change).await?
        }
        _ => return Err(Error::MethodNotAllowed(format!("{method} is not supported on {}/scale", info.plural))),
    };
    answer(scale::to_scale(&scaled.body))
}

/// DELETE on a collection: deletes what the selectors select, one object at a time, each with
/// the same options.
async fn delete_collection(
    state: &ApiState,
    info: &'static crate::registry::ResourceInfo,
    namespace: Option<&str>,
    params: &Params,
    options: &DeleteOptions,
    output: Output,
) -> Result<Response> {
    let page = list::page(state, info, namespace, params).await?;
    let mut deleted = Vec::new();
    for item in &page.items {
        let value = item.value();
        let item_namespace = object::namespace(&value).to_string();
        let item_namespace = (!item_namespace.is_empty()).then_some(item_namespace);
        match deletion::delete(state, info, item_namespace.as_deref(), item.name(), options).await {
            Ok(_) => deleted.push(value),
            Err(Error::NotFound(_)) => {}
            Err(error) => return Err(error),
        }
    }
    let metadata = json!({ "resourceVersion": page.revision.to_string() });
    let list = match output {
        Output::Metadata(_, version) => json!({
            "kind": "PartialObjectMetadataList", "apiVersion": version.api_version(), "metadata": metadata,
            "items": deleted.iter().map(|object| object::partial_metadata(object, version)).collect::<Vec<_>>(),
        }),
        Output::Table(include, version) => table::table(info, &deleted, metadata, include, version),
        Output::Json | Output::Protobuf => json!({
            "kind": format!("{}List", info.kind), "apiVersion": info.api_version(), "metadata": metadata,
            "items": deleted,
        }),
    };
    Ok(http::response_as(output, StatusCode::OK, &list))
}
