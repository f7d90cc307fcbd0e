//! RocksDB's compactions run at a low CPU priority (nice 19): on a two-core machine they yield
//! to the threads that serve requests (`engine_rocks.rs`).

#![cfg(target_os = "linux")]

use store::{Durability, Engine, RocksEngine, RocksOptions, Space, WriteBatch};

/// The nice value of each of this process's threads named `name`.
fn nice_of_threads_named(name: &str) -> Vec<i64> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else { continue };
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        // After the command, which is in parentheses: state is field 3, nice field 19.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        nice.push(fields[19 - 3].parse().unwrap());
    }
    nice
}

#[test]
fn compactions_run_at_a_low_cpu_priority() {
    let dir = tempfile::tempdir().unwrap();
    let engine = RocksEngine::open(dir.path(), &RocksOptions::default()).unwrap();
    // Three flushed files, then one compaction of them all, which runs in the low pool.
    for round in 0..3u32 {
        let mut batch = WriteBatch::default();
        for key in 0..1000u32 {
            batch.put(Space::Kv, format!("key-{key:05}").into_bytes(), format!("value-{round}").into_bytes());
        }
        engine.write(batch, Durability::Buffered).unwrap();
        engine.reclaim_space(Space::Kv).unwrap();
    }
    let nice = nice_of_threads_named("rocksdb:low");
    assert!(!nice.is_empty(), "no RocksDB compaction thread");
    assert!(nice.contains(&19), "compaction threads' nice values: {nice:?}");
    assert!(nice_of_threads_named("rocksdb:high").iter().all(|&value| value == 0), "flushes keep their priority");
}
