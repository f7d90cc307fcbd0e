//! Serving a [`RangeRequest`] from a [`ReadView`], with etcd's semantics for count, limit, sort
//! and filters, in bounded memory: the reply itself plus, when sorting with a limit, a heap of
//! `limit + 1` entries.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::command::{RangeRequest, RangeResponse, SortOrder, SortTarget};
use crate::error::Result;
use crate::key_range::KeyRange;
use crate::key_value::KeyValue;
use crate::read_view::{Flow, ReadView};

pub fn range(view: &ReadView, request: &RangeRequest) -> Result<RangeResponse> {
    let key_range = KeyRange::new(&request.key, &request.range_end);
    let limit = usize::try_from(request.limit).ok().filter(|limit| *limit > 0);
    let sort_order = effective_sort_order(request);
    let mut count = 0i64;
    let mut collected = Collected::new(request, sort_order, limit);
    view.scan(&key_range, |version| {
        count += 1;
        if request.count_only {
            return Ok(Flow::Continue);
        }
        if collected.is_full_without_sort() {
            // Only the count is still needed; the reply already holds limit + 1 keys.
            return Ok(Flow::Continue);
        }
        let kv = version.to_key_value()?;
        if passes_filters(request, &kv) {
            collected.push(kv);
        }
        Ok(Flow::Continue)
    })?;
    let (mut kvs, more) = collected.finish();
    if request.count_only {
        kvs.clear();
    }
    if request.keys_only {
        // After sorting, as etcd does, so a keys-only range can still sort by value.
        for kv in &mut kvs {
            kv.value = bytes::Bytes::new();
        }
    }
    Ok(RangeResponse { kvs, more, count, revision: 0 })
}

/// etcd's rule: results come in key order, so ASCEND on KEY needs no sort, and any other target
/// without an order is sorted ASCEND.
fn effective_sort_order(request: &RangeRequest) -> SortOrder {
    match (request.sort_target, request.sort_order) {
        (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
        (SortTarget::Key, order) => order,
        (_, SortOrder::None) => SortOrder::Ascend,
        (_, order) => order,
    }
}

fn passes_filters(request: &RangeRequest, kv: &KeyValue) -> bool {
    let below_min = |min: i64, value: i64| min != 0 && value < min;
    let above_max = |max: i64, value: i64| max != 0 && value > max;
    !(below_min(request.min_mod_revision, kv.mod_revision)
        || above_max(request.max_mod_revision, kv.mod_revision)
        || below_min(request.min_create_revision, kv.create_revision)
        || above_max(request.max_create_revision, kv.create_revision))
}

/// Orders two versions as the request's sort asks; ties break on the key, ascending.
fn compare(target: SortTarget, order: SortOrder, a: &KeyValue, b: &KeyValue) -> Ordering {
    let by_target = match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    let by_target = if order == SortOrder::Descend { by_target.reverse() } else { by_target };
    by_target.then_with(|| a.key.cmp(&b.key))
}

/// A heap entry ordered by the request's sort, so the heap's top is the entry that sorts last.
struct Sorted {
    kv: KeyValue,
    target: SortTarget,
    order: SortOrder,
}

impl PartialEq for Sorted {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Sorted {}
impl PartialOrd for Sorted {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Sorted {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(self.target, self.order, &self.kv, &other.kv)
    }
}

/// The versions a range keeps for its reply.
struct Collected {
    target: SortTarget,
    order: SortOrder,
    limit: Option<usize>,
    in_key_order: Vec<KeyValue>,
    heap: BinaryHeap<Sorted>,
}

impl Collected {
    fn new(request: &RangeRequest, order: SortOrder, limit: Option<usize>) -> Self {
        Collected { target: request.sort_target, order, limit, in_key_order: Vec::new(), heap: BinaryHeap::new() }
    }

    /// Keeping one more than the limit is how `more` is known.
    fn keep_max(&self) -> Option<usize> {
        self.limit.map(|limit| limit + 1)
    }

    fn is_full_without_sort(&self) -> bool {
        self.order == SortOrder::None && self.keep_max().is_some_and(|max| self.in_key_order.len() >= max)
    }

    fn push(&mut self, kv: KeyValue) {
        if self.order == SortOrder::None {
            self.in_key_order.push(kv);
            return;
        }
        self.heap.push(Sorted { kv, target: self.target, order: self.order });
        if self.keep_max().is_some_and(|max| self.heap.len() > max) {
            self.heap.pop();
        }
    }

    /// The reply's versions and whether more matched than the limit.
    fn finish(self) -> (Vec<KeyValue>, bool) {
        let mut kvs = if self.order == SortOrder::None {
            self.in_key_order
        } else {
            self.heap.into_sorted_vec().into_iter().map(|sorted| sorted.kv).collect()
        };
        let more = self.limit.is_some_and(|limit| kvs.len() > limit);
        if let Some(limit) = self.limit {
            kvs.truncate(limit);
        }
        (kvs, more)
    }
}
