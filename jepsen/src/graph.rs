//! A directed graph with a bitmask of kinds on each edge, and the searches cycle detection needs:
//! strongly connected components (every cycle lies inside one) and shortest cycles and paths
//! restricted to some edge kinds (which kinds a cycle uses is what classifies an anomaly).

use std::collections::{HashMap, VecDeque};

#[derive(Clone, Debug, Default)]
pub(crate) struct Graph {
    /// node → (successor, kinds)
    out: Vec<Vec<(usize, u8)>>,
}

impl Graph {
    pub(crate) fn new(nodes: usize) -> Self {
        Graph { out: vec![Vec::new(); nodes] }
    }

    pub(crate) fn len(&self) -> usize {
        self.out.len()
    }

    /// Adds an edge; callers add each (from, to) pair once, with all its kinds.
    pub(crate) fn add_edge(&mut self, from: usize, to: usize, kinds: u8) {
        self.out[from].push((to, kinds));
    }

    pub(crate) fn edges(&self, from: usize) -> impl Iterator<Item = (usize, u8)> + '_ {
        self.out[from].iter().copied()
    }

    /// The subgraph induced by `nodes`, renumbered `0..nodes.len()` in that order.
    pub(crate) fn induced(&self, nodes: &[usize]) -> Graph {
        let local: HashMap<usize, usize> = nodes.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let mut sub = Graph::new(nodes.len());
        for (i, &n) in nodes.iter().enumerate() {
            for &(to, kinds) in &self.out[n] {
                if let Some(&j) = local.get(&to) {
                    sub.add_edge(i, j, kinds);
                }
            }
        }
        sub
    }

    /// Strongly connected components with more than one node, over edges with any of `kinds`
    /// (Tarjan's algorithm, iterative so deep graphs cannot overflow the stack).
    pub(crate) fn components(&self, kinds: u8) -> Vec<Vec<usize>> {
        const UNSEEN: usize = usize::MAX;
        let n = self.len();
        let mut index = vec![UNSEEN; n];
        let mut low = vec![0; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut components = Vec::new();
        let mut next_index = 0;
        for root in 0..n {
            if index[root] != UNSEEN {
                continue;
            }
            // (node, position in its edge list)
            let mut calls = vec![(root, 0)];
            index[root] = next_index;
            low[root] = next_index;
            next_index += 1;
            stack.push(root);
            on_stack[root] = true;
            while let Some(&(v, position)) = calls.last() {
                if let Some(&(w, edge_kinds)) = self.out[v].get(position) {
                    calls.last_mut().expect("non-empty").1 += 1;
                    if edge_kinds & kinds == 0 {
                        continue;
                    }
                    if index[w] == UNSEEN {
                        index[w] = next_index;
                        low[w] = next_index;
                        next_index += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        calls.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                calls.pop();
                if let Some(&(parent, _)) = calls.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut component = Vec::new();
                    loop {
                        let w = stack.pop().expect("v is on the stack");
                        on_stack[w] = false;
                        component.push(w);
                        if w == v {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        component.reverse();
                        components.push(component);
                    }
                }
            }
        }
        components
    }

    /// The shortest path `from` → `to` (`from` first, `to` last; at least one edge) over edges with
    /// any of `kinds` between nodes where `allowed` holds. `budget` counts visited nodes down; the
    /// search gives up at zero.
    pub(crate) fn shortest_path(
        &self,
        from: usize,
        to: usize,
        kinds: u8,
        allowed: &dyn Fn(usize) -> bool,
        budget: &mut usize,
    ) -> Option<Vec<usize>> {
        let mut parent: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(u) = queue.pop_front() {
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
            for &(w, edge_kinds) in &self.out[u] {
                if edge_kinds & kinds == 0 || !allowed(w) {
                    continue;
                }
                if w == to {
                    let mut path = vec![to, u];
                    let mut at = u;
                    while at != from {
                        at = parent[&at];
                        path.push(at);
                    }
                    path.reverse();
                    return Some(path);
                }
                if w != from && !parent.contains_key(&w) {
                    parent.insert(w, u);
                    queue.push_back(w);
                }
            }
        }
        None
    }
}
