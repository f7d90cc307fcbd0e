//! The in-memory engine: one B-tree per space behind a lock. For tests and simulation; it
//! "survives" only as long as the value lives, which is what a reopen test of it checks.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use crate::engine::{Cursor, Durability, Engine, Reader, Space, WriteBatch, WriteOp};
use crate::error::Result;

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;

/// Cloning shares the data, so a test can "reopen" a store on the same memory engine.
#[derive(Debug, Clone, Default)]
pub struct MemoryEngine {
    spaces: Arc<RwLock<[Tree; Space::ALL.len()]>>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Entries a cursor copies out per lock acquisition: the lock is never held between calls.
const CURSOR_CHUNK_ENTRIES: usize = 256;

impl Reader for MemoryEngine {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.spaces.read().expect("memory engine lock")[space.index()].get(key).cloned())
    }

    fn cursor(&self, space: Space, upper_bound: Option<&[u8]>) -> Box<dyn Cursor + '_> {
        Box::new(MemoryCursor {
            engine: self,
            space,
            upper_bound: upper_bound.map(<[u8]>::to_vec),
            chunk: Vec::new(),
            position: 0,
            exhausted: true,
        })
    }
}

impl Engine for MemoryEngine {
    fn write(&self, batch: WriteBatch, _durability: Durability) -> Result<()> {
        let mut spaces = self.spaces.write().expect("memory engine lock");
        for op in batch.ops {
            match op {
                WriteOp::Put { space, key, value } => {
                    spaces[space.index()].insert(key, value);
                }
                WriteOp::Delete { space, key } => {
                    spaces[space.index()].remove(&key);
                }
                WriteOp::DeleteRange { space, from, to } => {
                    let tree = &mut spaces[space.index()];
                    let doomed: Vec<Vec<u8>> = tree.range(from..to).map(|(key, _)| key.clone()).collect();
                    for key in doomed {
                        tree.remove(&key);
                    }
                }
            }
        }
        Ok(())
    }

    fn reclaim_space(&self, _space: Space) -> Result<()> {
        Ok(())
    }

    fn consistent_copy(&self, _scratch: &std::path::Path) -> Result<Arc<dyn Engine>> {
        let spaces = self.spaces.read().expect("memory engine lock").clone();
        Ok(Arc::new(MemoryEngine { spaces: Arc::new(RwLock::new(spaces)) }))
    }

    fn clear(&self) -> Result<()> {
        self.spaces.write().expect("memory engine lock").iter_mut().for_each(Tree::clear);
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        let spaces = self.spaces.read().expect("memory engine lock");
        spaces.iter().flat_map(|tree| tree.iter()).map(|(key, value)| (key.len() + value.len()) as u64).sum()
    }
}

struct MemoryCursor<'a> {
    engine: &'a MemoryEngine,
    space: Space,
    upper_bound: Option<Vec<u8>>,
    chunk: Vec<(Vec<u8>, Vec<u8>)>,
    position: usize,
    /// True when the last fill found nothing beyond this chunk.
    exhausted: bool,
}

impl MemoryCursor<'_> {
    fn fill(&mut self, from: Bound<Vec<u8>>) {
        let spaces = self.engine.spaces.read().expect("memory engine lock");
        let upper = match &self.upper_bound {
            Some(bound) => Bound::Excluded(bound.clone()),
            None => Bound::Unbounded,
        };
        if matches!((&from, &upper), (Bound::Included(low) | Bound::Excluded(low), Bound::Excluded(high)) if low >= high)
        {
            self.chunk.clear();
            self.position = 0;
            self.exhausted = true;
            return;
        }
        self.chunk = spaces[self.space.index()]
            .range((from, upper))
            .take(CURSOR_CHUNK_ENTRIES + 1)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        self.exhausted = self.chunk.len() <= CURSOR_CHUNK_ENTRIES;
        self.chunk.truncate(CURSOR_CHUNK_ENTRIES);
        self.position = 0;
    }
}

impl Cursor for MemoryCursor<'_> {
    fn seek(&mut self, target: &[u8]) {
        self.fill(Bound::Included(target.to_vec()));
    }

    fn next(&mut self) {
        self.position += 1;
        if self.position >= self.chunk.len() && !self.exhausted {
            let last = self.chunk.last().expect("a full chunk").0.clone();
            self.fill(Bound::Excluded(last));
        }
    }

    fn key(&self) -> Option<&[u8]> {
        self.chunk.get(self.position).map(|(key, _)| key.as_slice())
    }

    fn value(&self) -> &[u8] {
        &self.chunk[self.position].1
    }

    fn status(&self) -> Result<()> {
        Ok(())
    }
}
