//! etcd's gRPC codes and messages for keel's errors, as etcd's `rpctypes` defines them, so
//! clients that test for them (etcdctl, clientv3, kube-apiserver) recognise them.

use raft::MemberError;
use tonic::{Code, Status};

pub fn from_store(error: store::Error) -> Status {
    use store::Error as E;
    let (code, message) = match &error {
        E::Compacted { .. } => (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
        E::FutureRevision { .. } => (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
        E::EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided"),
        E::KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
        E::ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
        E::LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
        E::LeaseNotFound { .. } => (Code::NotFound, "etcdserver: requested lease not found"),
        E::LeaseExists { .. } => (Code::FailedPrecondition, "etcdserver: lease already exists"),
        E::LeaseTtlTooLarge { .. } => (Code::OutOfRange, "etcdserver: too large lease TTL"),
        E::InvalidLeaseId { .. } => (Code::InvalidArgument, "etcdserver: lease ID must be positive"),
        E::DuplicateKey => (Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
        E::TooManyOps { .. } => (Code::InvalidArgument, "etcdserver: too many operations in txn request"),
        E::Corrupt { .. } => return Status::data_loss(format!("etcdserver: {error}")),
        E::Engine(_) | E::Failed => return Status::internal(format!("etcdserver: {error}")),
    };
    Status::new(code, message)
}

pub fn from_member(error: MemberError) -> Status {
    match error {
        MemberError::NotLeader { leader: None } => Status::unavailable("etcdserver: no leader"),
        MemberError::NotLeader { leader: Some(_) } => Status::unavailable("etcdserver: not leader"),
        MemberError::Store(error) => from_store(error),
        other => Status::unavailable(format!("etcdserver: {other}")),
    }
}
