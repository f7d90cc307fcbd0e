//! Protobuf messages to store requests and back. Enum fields arrive as i32; a value etcd does
//! not define is rejected as etcd's server rejects it.

use bytes::Bytes;
use etcd_client::proto::{
    PbCompare, PbDeleteRequest, PbDeleteResponse, PbKeyValue, PbPutRequest, PbPutResponse, PbRangeResponse,
    PbResponseOp, PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest, PbTxnResponse,
};
use etcd_client::proto::{PbRangeRequest, PbTxnRequestOp};
use store::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest, RequestOp,
    ResponseOp, SortOrder, SortTarget, TxnRequest,
};
use tonic::Status;

fn bytes(vec: Vec<u8>) -> Bytes {
    Bytes::from(vec)
}

pub fn key_value(kv: KeyValue) -> PbKeyValue {
    PbKeyValue {
        key: kv.key.to_vec(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value.to_vec(),
        lease: kv.lease,
    }
}

pub fn range_request(request: PbRangeRequest) -> Result<RangeRequest, Status> {
    let sort_order = match request.sort_order {
        0 => SortOrder::None,
        1 => SortOrder::Ascend,
        2 => SortOrder::Descend,
        other => return Err(Status::invalid_argument(format!("etcdserver: invalid sort order {other}"))),
    };
    let sort_target = match request.sort_target {
        0 => SortTarget::Key,
        1 => SortTarget::Version,
        2 => SortTarget::Create,
        3 => SortTarget::Mod,
        4 => SortTarget::Value,
        other => return Err(Status::invalid_argument(format!("etcdserver: invalid sort target {other}"))),
    };
    Ok(RangeRequest {
        key: bytes(request.key),
        range_end: bytes(request.range_end),
        limit: request.limit,
        revision: request.revision,
        sort_order,
        sort_target,
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
    })
}

pub fn range_response(
    response: store::RangeResponse,
    header: Option<etcd_client::proto::PbResponseHeader>,
) -> PbRangeResponse {
    PbRangeResponse {
        header,
        kvs: response.kvs.into_iter().map(key_value).collect(),
        more: response.more,
        count: response.count,
    }
}

pub fn put_request(request: PbPutRequest) -> PutRequest {
    PutRequest {
        key: bytes(request.key),
        value: bytes(request.value),
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

pub fn put_response(
    response: store::PutResponse,
    header: Option<etcd_client::proto::PbResponseHeader>,
) -> PbPutResponse {
    PbPutResponse { header, prev_kv: response.prev_kv.map(key_value) }
}

pub fn delete_request(request: PbDeleteRequest) -> DeleteRangeRequest {
    DeleteRangeRequest { key: bytes(request.key), range_end: bytes(request.range_end), prev_kv: request.prev_kv }
}

pub fn delete_response(
    response: store::DeleteRangeResponse,
    header: Option<etcd_client::proto::PbResponseHeader>,
) -> PbDeleteResponse {
    PbDeleteResponse {
        header,
        deleted: response.deleted,
        prev_kvs: response.prev_kvs.into_iter().map(key_value).collect(),
    }
}

fn compare(compare: PbCompare) -> Result<Compare, Status> {
    let result = match compare.result {
        0 => CompareResult::Equal,
        1 => CompareResult::Greater,
        2 => CompareResult::Less,
        3 => CompareResult::NotEqual,
        other => return Err(Status::invalid_argument(format!("etcdserver: invalid compare result {other}"))),
    };
    // etcd reads the operand the target names; a missing one compares as zero (or empty).
    let union = compare.target_union;
    let number = |pick: fn(&PbTargetUnion) -> Option<i64>| union.as_ref().and_then(pick).unwrap_or(0);
    let target = match compare.target {
        0 => CompareTarget::Version(number(|u| if let PbTargetUnion::Version(v) = u { Some(*v) } else { None })),
        1 => CompareTarget::Create(number(|u| if let PbTargetUnion::CreateRevision(v) = u { Some(*v) } else { None })),
        2 => CompareTarget::Mod(number(|u| if let PbTargetUnion::ModRevision(v) = u { Some(*v) } else { None })),
        3 => CompareTarget::Value(match &union {
            Some(PbTargetUnion::Value(value)) => Bytes::copy_from_slice(value),
            _ => Bytes::new(),
        }),
        4 => CompareTarget::Lease(number(|u| if let PbTargetUnion::Lease(v) = u { Some(*v) } else { None })),
        other => return Err(Status::invalid_argument(format!("etcdserver: invalid compare target {other}"))),
    };
    Ok(Compare { result, target, key: bytes(compare.key), range_end: bytes(compare.range_end) })
}

fn request_op(op: PbTxnRequestOp) -> Result<RequestOp, Status> {
    match op.request {
        Some(PbTxnOpRequest::RequestRange(range)) => Ok(RequestOp::Range(range_request(range)?)),
        Some(PbTxnOpRequest::RequestPut(put)) => Ok(RequestOp::Put(put_request(put))),
        Some(PbTxnOpRequest::RequestDeleteRange(delete)) => Ok(RequestOp::DeleteRange(delete_request(delete))),
        Some(PbTxnOpRequest::RequestTxn(txn)) => Ok(RequestOp::Txn(txn_request(txn)?)),
        None => Err(Status::invalid_argument("etcdserver: empty request op")),
    }
}

pub fn txn_request(request: PbTxnRequest) -> Result<TxnRequest, Status> {
    Ok(TxnRequest {
        compare: request.compare.into_iter().map(compare).collect::<Result<_, _>>()?,
        success: request.success.into_iter().map(request_op).collect::<Result<_, _>>()?,
        failure: request.failure.into_iter().map(request_op).collect::<Result<_, _>>()?,
    })
}

/// A txn response under `header`. As in etcd, each nested response's header carries only its
/// revision.
pub fn txn_response(
    response: store::TxnResponse,
    header: Option<etcd_client::proto::PbResponseHeader>,
) -> PbTxnResponse {
    let inner = |revision| Some(etcd_client::proto::PbResponseHeader { revision, ..Default::default() });
    let responses = response
        .responses
        .into_iter()
        .map(|op| PbResponseOp {
            response: Some(match op {
                ResponseOp::Range(range) => {
                    let revision = range.revision;
                    PbTxnOpResponse::ResponseRange(range_response(range, inner(revision)))
                }
                ResponseOp::Put(put) => {
                    let revision = put.revision;
                    PbTxnOpResponse::ResponsePut(put_response(put, inner(revision)))
                }
                ResponseOp::DeleteRange(delete) => {
                    let revision = delete.revision;
                    PbTxnOpResponse::ResponseDeleteRange(delete_response(delete, inner(revision)))
                }
                ResponseOp::Txn(txn) => {
                    let revision = txn.revision;
                    PbTxnOpResponse::ResponseTxn(txn_response(txn, inner(revision)))
                }
            }),
        })
        .collect();
    PbTxnResponse { header, succeeded: response.succeeded, responses }
}
