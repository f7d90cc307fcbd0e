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

/// What a range found, besides the versions it handed to its sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeSummary {
    /// Keys in the range at the read revision, before filters and limit.
    pub count: i64,
    /// More versions matched than the limit let through.
    pub more: bool,
    /// The store's current revision when the read was served (etcd's header revision).
    pub revision: i64,
}

/// Serves `request`, handing each version of the reply to `sink` in reply order. Without a
/// sort the versions stream straight through (the caller may encode them as they come); with
/// one, at most `limit + 1` are held in a heap, or all of them when there is no limit.
pub fn range_into(
    view: &ReadView,
    request: &RangeRequest,
    sink: &mut dyn FnMut(KeyValue) -> Result<()>,
) -> Result<RangeSummary> {
    range_scan(view, request, Counting::WholeRange, sink)
}

/// Whether a range reads on past its limit to count every key (etcd's `count`), or stops once
/// `more` is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    WholeRange,
    /// `count` is then only the keys read. Paging through a large range with etcd's count
    /// would read the rest of the range for every page.
    UpToLimit,
}

pub fn range_scan(
    view: &ReadView,
    request: &RangeRequest,
    counting: Counting,
    sink: &mut dyn FnMut(KeyValue) -> Result<()>,
) -> Result<RangeSummary> {
    let key_range = KeyRange::new(&request.key, &request.range_end);
    let limit = usize::try_from(request.limit).ok().filter(|limit| *limit > 0);
    let sort_order = effective_sort_order(request);
    // Values are only needed in the reply, or to sort by.
    let needs_value = !request.keys_only || (sort_order != SortOrder::None && request.sort_target == SortTarget::Value);
    let mut count = 0i64;
    let mut matched = 0usize;
    let mut heap = BinaryHeap::new();
    view.scan(&key_range, |version| {
        count += 1;
        let limit_reached = limit.is_some_and(|limit| matched > limit);
        if request.count_only || (sort_order == SortOrder::None && limit_reached) {
            // Only the count is still needed.
            return Ok(Flow::Continue);
        }
        let mut kv = if needs_value { version.to_key_value()? } else { version.to_key_value_without_value()? };
        if !passes_filters(request, &kv) {
            return Ok(Flow::Continue);
        }
        matched += 1;
        if sort_order == SortOrder::None {
            if limit.is_none_or(|limit| matched <= limit) {
                sink(kv)?;
            } else if counting == Counting::UpToLimit {
                // This key is the one past the limit: `more` is known.
                return Ok(Flow::Stop);
            }
            return Ok(Flow::Continue);
        }
        if request.keys_only && request.sort_target != SortTarget::Value {
            kv.value = bytes::Bytes::new();
        }
        heap.push(Sorted { kv, target: request.sort_target, order: sort_order });
        // Keeping one more than the limit is how `more` is known.
        if limit.is_some_and(|limit| heap.len() > limit + 1) {
            heap.pop();
        }
        Ok(Flow::Continue)
    })?;
    let more = limit.is_some_and(|limit| matched > limit);
    let emit = limit.unwrap_or(usize::MAX);
    for sorted in heap.into_sorted_vec().into_iter().take(emit) {
        let mut kv = sorted.kv;
        if request.keys_only {
            // After sorting, as etcd does, so a keys-only range can still sort by value.
            kv.value = bytes::Bytes::new();
        }
        sink(kv)?;
    }
    Ok(RangeSummary { count, more, revision: 0 })
}

/// Serves `request` into a [`RangeResponse`] (its header revision left for the caller).
pub fn range(view: &ReadView, request: &RangeRequest) -> Result<RangeResponse> {
    let mut kvs = Vec::new();
    let summary = range_into(view, request, &mut |kv| {
        kvs.push(kv);
        Ok(())
    })?;
    Ok(RangeResponse { kvs, more: summary.more, count: summary.count, revision: 0 })
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
