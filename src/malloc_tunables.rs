//! glibc malloc settings for the long-running commands, applied by re-executing `keel` once with
//! `GLIBC_TUNABLES` set (glibc reads it only at start-up, and the workspace forbids the unsafe
//! `mallopt`).
//!
//! Why: Rust code allocates from mimalloc, but RocksDB (C++) allocates from glibc. A flushed
//! memtable's 2 MiB arena blocks went back to glibc's heaps and stayed resident there (glibc
//! raises its mmap threshold after the first large free), ~80 MiB in a `keel server` holding
//! 100k pods. A fixed mmap threshold maps such blocks on their own and unmaps them when freed;
//! two arenas and a 1 MiB trim threshold keep what is freed from lingering in many heaps.
//! Measured: peak RSS during a 100k-pod LIST 2.24× → 1.92× the JSON (BENCHMARKS.md).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

const TUNABLES: &str =
    "glibc.malloc.mmap_threshold=262144:glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=1048576";

/// Re-executes this process with [`TUNABLES`] unless `GLIBC_TUNABLES` is already set (by a
/// previous exec, or by the user, whose choice stands). Returns only if it did not re-execute.
pub fn apply() {
    if !cfg!(target_env = "gnu") || std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let Ok(executable) = std::env::current_exe() else { return };
    let mut arguments = std::env::args_os();
    let arg0 = arguments.next().unwrap_or_else(|| OsString::from("keel"));
    let error =
        std::process::Command::new(executable).arg0(arg0).args(arguments).env("GLIBC_TUNABLES", TUNABLES).exec();
    // Still here: exec failed (e.g. the binary was replaced on disk); run with glibc's defaults.
    eprintln!("keel: could not re-execute with GLIBC_TUNABLES ({error}); glibc malloc keeps its defaults");
}
