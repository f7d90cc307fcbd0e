//! Ranges long enough that the scan changes cursors part way (it stops filling the engine's cache
//! after its first keys) answer as a short one does: every key once, at the read revision.

mod common;

use common::*;
use store::{Command, RangeRequest};

const KEYS: usize = 3000;

fn key(i: usize) -> String {
    format!("k/{i:05}")
}

#[test]
fn long_ranges_see_every_key_once_at_their_revision() {
    for kind in ENGINES {
        let mut h = Harness::new(kind);
        let first: Vec<Command> = (0..KEYS).map(|i| put(&key(i), &format!("v{i}"))).collect();
        for batch in first.chunks(500) {
            h.apply_batch(batch.to_vec()).into_iter().for_each(|result| drop(result.expect("put")));
        }
        let after_first = h.store().revision();
        // Several versions of every third key, and every seventh key deleted.
        for round in 1..=3 {
            let updates: Vec<Command> = (0..KEYS).step_by(3).map(|i| put(&key(i), &format!("v{i}.{round}"))).collect();
            h.apply_batch(updates).into_iter().for_each(|result| drop(result.expect("update")));
        }
        let deletes: Vec<Command> = (0..KEYS).step_by(7).map(|i| delete(&key(i), "")).collect();
        h.apply_batch(deletes).into_iter().for_each(|result| drop(result.expect("delete")));
        h.reopen();

        let live: Vec<usize> = (0..KEYS).filter(|i| i % 7 != 0).collect();
        let now = h.range(range("k/", "k0")).expect("range now");
        assert_eq!(now.count as usize, live.len(), "{kind:?}");
        let keys: Vec<String> = now.kvs.iter().map(|kv| text(&kv.key)).collect();
        assert_eq!(keys, live.iter().map(|&i| key(i)).collect::<Vec<_>>(), "{kind:?}: every live key once, in order");
        for (kv, &i) in now.kvs.iter().zip(&live) {
            let value = if i % 3 == 0 { format!("v{i}.3") } else { format!("v{i}") };
            assert_eq!(text(&kv.value), value, "{kind:?}: newest version of {}", key(i));
            assert_eq!(kv.version, if i % 3 == 0 { 4 } else { 1 }, "{kind:?}");
        }

        let then = h.range(RangeRequest { revision: after_first, ..range("k/", "k0") }).expect("range then");
        assert_eq!(then.kvs.len(), KEYS, "{kind:?}: at the first load's revision every key is there");
        assert!(then.kvs.iter().enumerate().all(|(i, kv)| text(&kv.value) == format!("v{i}")), "{kind:?}");

        let limited = h.range(RangeRequest { limit: 2500, keys_only: true, ..range("k/", "k0") }).expect("limited");
        assert_eq!(limited.kvs.len(), 2500, "{kind:?}");
        assert!(limited.more, "{kind:?}");
        assert_eq!(limited.count as usize, live.len(), "{kind:?}: count is of the whole range");
        assert_eq!(text(&limited.kvs[2499].key), key(live[2499]), "{kind:?}");
    }
}
