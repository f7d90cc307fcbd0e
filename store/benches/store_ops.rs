//! Latency of the store's operations on RocksDB (criterion).
//!
//! `cargo bench -p store --bench store_ops`

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use store::{
    Command, Compare, CompareResult, CompareTarget, Durability, PutRequest, RangeRequest, RequestOp, RocksEngine,
    RocksOptions, Store, StoreOptions, TxnRequest,
};

struct Bench {
    store: Store,
    _dir: tempfile::TempDir,
    position: u64,
}

impl Bench {
    fn new(durability: Durability) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let engine = RocksEngine::open(dir.path(), &RocksOptions::default()).unwrap();
        let options = StoreOptions { durability, ..StoreOptions::default() };
        Bench { store: Store::open(Arc::new(engine), options).unwrap(), _dir: dir, position: 0 }
    }

    fn apply(&mut self, commands: &[Command]) {
        self.position += 1;
        let output = self.store.apply(commands, &self.position.to_be_bytes()).unwrap();
        assert!(output.results.iter().all(Result::is_ok));
    }
}

fn key(index: u64) -> Bytes {
    Bytes::from(format!("/registry/pods/default/pod-{index:08}"))
}

fn put(index: u64, value: &Bytes) -> Command {
    Command::Put(PutRequest { key: key(index), value: value.clone(), ..PutRequest::default() })
}

fn value() -> Bytes {
    Bytes::from(vec![b'x'; 256])
}

fn writes(c: &mut Criterion) {
    let value = value();
    let mut group = c.benchmark_group("write");
    for (name, durability) in [("put_fsync", Durability::Sync), ("put_buffered", Durability::Buffered)] {
        let mut bench = Bench::new(durability);
        let mut index = 0u64;
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| {
                index += 1;
                bench.apply(&[put(index % 100_000, &value)]);
            })
        });
    }
    let mut bench = Bench::new(Durability::Sync);
    let mut index = 0u64;
    group.throughput(Throughput::Elements(100));
    group.bench_function("put_batch_of_100_fsync", |b| {
        b.iter_batched(
            || {
                (0..100)
                    .map(|_| {
                        index += 1;
                        put(index % 100_000, &value)
                    })
                    .collect::<Vec<_>>()
            },
            |commands| bench.apply(&commands),
            BatchSize::SmallInput,
        )
    });
    let mut bench = Bench::new(Durability::Buffered);
    bench.apply(&[put(0, &value)]);
    group.throughput(Throughput::Elements(1));
    group.bench_function("txn_compare_and_swap_buffered", |b| {
        b.iter(|| {
            let revision = bench.store.revision();
            let txn = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal,
                    target: CompareTarget::Mod(revision),
                    key: key(0),
                    range_end: Bytes::new(),
                }],
                success: vec![RequestOp::Put(PutRequest {
                    key: key(0),
                    value: value.clone(),
                    ..PutRequest::default()
                })],
                failure: vec![],
            };
            bench.apply(&[Command::Txn(txn)]);
        })
    });
    group.finish();
}

fn reads(c: &mut Criterion) {
    let value = value();
    let mut bench = Bench::new(Durability::Buffered);
    for chunk in (0..10_000u64).collect::<Vec<_>>().chunks(1000) {
        let commands: Vec<Command> = chunk.iter().map(|index| put(*index, &value)).collect();
        bench.apply(&commands);
    }
    // 200 more versions of one key, for the historical read.
    let old_revision = bench.store.revision();
    for _ in 0..200 {
        bench.apply(&[put(5000, &Bytes::from_static(b"newer"))]);
    }
    let mut group = c.benchmark_group("range");
    let range_of = |count: u64| RangeRequest { key: key(0), range_end: key(count), ..RangeRequest::default() };
    group.bench_function("single_key", |b| {
        let request = RangeRequest { key: key(4321), ..RangeRequest::default() };
        b.iter(|| assert_eq!(bench.store.range(&request).unwrap().kvs.len(), 1))
    });
    for count in [100u64, 10_000] {
        group.throughput(Throughput::Elements(count));
        group.bench_function(format!("{count}_keys"), |b| {
            let request = range_of(count);
            b.iter(|| assert_eq!(bench.store.range(&request).unwrap().kvs.len() as u64, count))
        });
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("single_key_200_versions_back", |b| {
        let request = RangeRequest { key: key(5000), revision: old_revision, ..RangeRequest::default() };
        b.iter(|| assert_eq!(bench.store.range(&request).unwrap().kvs[0].value, value))
    });
    group.finish();
}

criterion_group!(benches, writes, reads);
criterion_main!(benches);
