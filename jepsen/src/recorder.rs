//! The history as it is recorded: one JSON line per event, written the moment it happens, with
//! times from one monotonic clock started with the run.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use jepsen::history::{Event, EventKind, Op};

/// The run's monotonic clock, in nanoseconds since the start.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }

    pub fn secs(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

#[derive(Debug)]
pub struct Recorder {
    clock: Clock,
    file: Mutex<BufWriter<File>>,
}

impl Recorder {
    pub fn create(path: &Path, clock: Clock) -> std::io::Result<Recorder> {
        Ok(Recorder { clock, file: Mutex::new(BufWriter::new(File::create(path)?)) })
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Writes the event with the current time, taken under the file's lock so the file is in
    /// time order.
    fn record(&self, process: u64, kind: EventKind, op: &Op, revision: Option<i64>, error: Option<&str>) {
        let mut file = self.file.lock().unwrap();
        let mut event = Event::new(process, kind, self.clock.now_ns(), op.clone());
        event.revision = revision;
        event.error = error.map(str::to_string);
        serde_json::to_writer(&mut *file, &event).expect("serialize an event");
        file.write_all(b"\n").expect("write the history");
    }

    pub fn invoke(&self, process: u64, op: &Op) {
        self.record(process, EventKind::Invoke, op, None, None);
    }

    pub fn complete(&self, process: u64, kind: EventKind, op: &Op, revision: Option<i64>) {
        self.record(process, kind, op, revision, None);
    }

    pub fn complete_with_error(&self, process: u64, kind: EventKind, op: &Op, error: &str) {
        self.record(process, kind, op, None, Some(error));
    }

    pub fn flush(&self) {
        self.file.lock().unwrap().flush().expect("flush the history");
    }
}
