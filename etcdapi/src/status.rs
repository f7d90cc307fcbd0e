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
        E::Auth(auth) => return from_auth(auth.clone()),
        E::Corrupt { .. } => return Status::data_loss(format!("etcdserver: {error}")),
        E::Engine(_) | E::Failed => return Status::internal(format!("etcdserver: {error}")),
    };
    Status::new(code, message)
}

/// etcd's codes for auth errors (its rpctypes); the messages are the errors' own.
pub fn from_auth(error: store::AuthError) -> Status {
    use store::AuthError as E;
    let code = match error {
        E::UserEmpty | E::RoleEmpty | E::AuthFailed | E::PermissionNotGiven | E::InvalidAuthManagement => {
            Code::InvalidArgument
        }
        E::PermissionDenied => Code::PermissionDenied,
        E::InvalidAuthToken => Code::Unauthenticated,
        E::NoPasswordUser => Code::Unknown,
        E::RootUserNotExist
        | E::RootRoleNotExist
        | E::UserAlreadyExist
        | E::UserNotFound
        | E::RoleAlreadyExist
        | E::RoleNotFound
        | E::RoleNotGranted
        | E::PermissionNotGranted
        | E::AuthNotEnabled => Code::FailedPrecondition,
    };
    Status::new(code, error.to_string())
}

pub fn from_member(error: MemberError) -> Status {
    use MemberError as E;
    let (code, message) = match &error {
        E::NotLeader { leader: None } => (Code::Unavailable, "etcdserver: no leader"),
        E::NotLeader { leader: Some(_) } => (Code::FailedPrecondition, "etcdserver: not leader"),
        E::LeaderChanged => (Code::Unavailable, "etcdserver: leader changed"),
        E::Timeout => (Code::Unavailable, "etcdserver: request timed out"),
        E::MemberNotFound => (Code::NotFound, "etcdserver: member not found"),
        E::PeerUrlExists => (Code::FailedPrecondition, "etcdserver: Peer URLs already exists"),
        E::NotLearner => (Code::FailedPrecondition, "etcdserver: can only promote a learner member"),
        E::LearnerNotReady => {
            (Code::FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
        }
        E::BadTransferee => (Code::FailedPrecondition, "etcdserver: bad leader transferee"),
        E::NoSpace => (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
        E::Store(store_error) => return from_store(store_error.clone()),
        E::Membership(_) => return Status::failed_precondition(format!("etcdserver: {error}")),
        E::Unreachable(_) | E::Raft(_) | E::Io(_) => return Status::unavailable(format!("etcdserver: {error}")),
    };
    Status::new(code, message)
}
