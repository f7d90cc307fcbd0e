//! [`ListBody`]: a JSON LIST answer written while it is sent, not built whole first.
//!
//! The page's objects are `Arc`s the cache (or a store read) already holds, each with its JSON
//! encoded once; the body is the list's head, those encodings separated by commas, and `]}`.
//! Building it whole doubled the memory a LIST of 100k pods needed (244 MiB more, BENCHMARKS.md);
//! here it is cut into frames of about [`CHUNK_BYTES`] that hyper asks for as its write buffer
//! drains, so what a LIST adds is a few frames in flight.
//!
//! The length is known up front, so the answer carries a Content-Length, as a body built whole
//! did. A Table (what `kubectl get` asks for) is streamed the same way, but each object becomes
//! a row only when its frame is written ([`ListBody::encoded`]); its length is not known, so it
//! goes out chunked.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Frame, SizeHint};

use crate::cached_object::CachedObject;

/// Small objects are copied into frames of about this size (hyper is not called per object);
/// an object this large or larger is sent as a frame of its own, without a copy.
pub const CHUNK_BYTES: usize = 64 * 1024;

const TRAILER: &[u8] = b"]}";

/// What an object becomes in the body.
type Encode = Box<dyn Fn(&CachedObject) -> Bytes + Send>;

pub struct ListBody {
    /// The head with its array opened (`{"kind":..,"metadata":{..},"items":[`), until the first
    /// frame takes it.
    head: Option<Bytes>,
    items: std::vec::IntoIter<Arc<CachedObject>>,
    /// None: the object's cached JSON as it is.
    encode: Option<Encode>,
    /// An object's encoding that did not fit in the last frame (its comma not written yet).
    carried: Option<Bytes>,
    /// Whether an object was written already (the next one needs a comma).
    wrote_item: bool,
    /// A large object's encoding, to send after the frame that ends with its comma.
    pending: Option<Bytes>,
    finished: bool,
    /// Bytes not yet handed to hyper, when known up front.
    remaining: Option<u64>,
}

impl ListBody {
    /// `head` is the list without its items: an encoded JSON object (`{"kind":..,"metadata":..}`),
    /// to which `"items"` is added as its last member.
    pub fn new(head: &[u8], items: Vec<Arc<CachedObject>>) -> ListBody {
        let mut body = ListBody::encoded(head, "items", items, None);
        let items_bytes: usize = body.items.as_slice().iter().map(|item| item.json.len()).sum();
        let commas = body.items.len().saturating_sub(1);
        let open = body.head.as_ref().map_or(0, Bytes::len);
        body.remaining = Some((open + items_bytes + commas + TRAILER.len()) as u64);
        body
    }

    /// `head` with the array `member` of `items`, each as `encode` makes it (None: its cached
    /// JSON); the length is not known up front.
    pub fn encoded(head: &[u8], member: &str, items: Vec<Arc<CachedObject>>, encode: Option<Encode>) -> ListBody {
        assert!(head.last() == Some(&b'}'), "the list head is a JSON object");
        let mut open = BytesMut::with_capacity(head.len() + member.len() + 5);
        open.put_slice(&head[..head.len() - 1]);
        let separator = if head.len() > 2 { "," } else { "" };
        open.put_slice(format!("{separator}\"{member}\":[").as_bytes());
        ListBody {
            head: Some(open.freeze()),
            items: items.into_iter(),
            encode,
            carried: None,
            wrote_item: false,
            pending: None,
            finished: false,
            remaining: None,
        }
    }

    /// The next frame: never empty; None once the trailer was sent.
    fn next_frame(&mut self) -> Option<Bytes> {
        let frame = self.pending.take().or_else(|| self.next_chunk())?;
        if let Some(remaining) = self.remaining.as_mut() {
            *remaining -= frame.len() as u64;
        }
        Some(frame)
    }

    /// The next object's encoding, the one a full frame left over first.
    fn next_piece(&mut self) -> Option<Bytes> {
        if let Some(piece) = self.carried.take() {
            return Some(piece);
        }
        let item = self.items.next()?;
        Some(match &self.encode {
            Some(encode) => encode(&item),
            None => item.json.clone(),
        })
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        let mut chunk = BytesMut::with_capacity(CHUNK_BYTES + TRAILER.len());
        if let Some(head) = self.head.take() {
            chunk.put_slice(&head);
        }
        loop {
            let Some(piece) = self.next_piece() else {
                chunk.put_slice(TRAILER);
                self.finished = true;
                break;
            };
            let size = piece.len();
            let separator = usize::from(self.wrote_item);
            if size < CHUNK_BYTES && chunk.len() + separator + size > CHUNK_BYTES {
                // Next frame: this one is full. It is not empty (an object under CHUNK_BYTES
                // fits with its comma in an empty frame).
                self.carried = Some(piece);
                break;
            }
            if self.wrote_item {
                chunk.put_u8(b',');
            }
            self.wrote_item = true;
            if size >= CHUNK_BYTES {
                if chunk.is_empty() {
                    return Some(piece);
                }
                self.pending = Some(piece);
                break;
            }
            chunk.put_slice(&piece);
        }
        Some(chunk.freeze())
    }
}

impl http_body::Body for ListBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().next_frame().map(|frame| Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        match self.remaining {
            Some(remaining) => remaining == 0,
            None => self.finished && self.pending.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

/// A body of frames encoded already (a protobuf LIST, `protobuf::encode_list`), sent as they
/// are, with its Content-Length: no copy into one buffer.
pub struct FramesBody {
    frames: std::vec::IntoIter<Bytes>,
    remaining: u64,
}

impl FramesBody {
    pub fn new(frames: Vec<Bytes>) -> FramesBody {
        let remaining = frames.iter().map(|frame| frame.len() as u64).sum();
        FramesBody { frames: frames.into_iter(), remaining }
    }
}

impl http_body::Body for FramesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let body = self.get_mut();
        let frame = body.frames.find(|frame| !frame.is_empty());
        if let Some(frame) = &frame {
            body.remaining -= frame.len() as u64;
        }
        Poll::Ready(frame.map(|frame| Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;
    use http_body::Body;
    use serde_json::{json, Value};

    fn object(name: &str, data_bytes: usize) -> Arc<CachedObject> {
        let configmaps = registry::find("", "v1", "configmaps").unwrap();
        let value = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "7"},
            "data": {"filler": "x".repeat(data_bytes)},
        });
        let key = Bytes::from(format!("/registry/configmaps/default/{name}"));
        Arc::new(CachedObject::from_value(configmaps, key, &value, 7))
    }

    fn head(metadata: Value) -> Vec<u8> {
        format!(r#"{{"kind":"ConfigMapList","apiVersion":"v1","metadata":{metadata}}}"#).into_bytes()
    }

    /// The frames of a body whose length is not known up front.
    fn unsized_frames(mut body: ListBody) -> Vec<Bytes> {
        assert_eq!(body.size_hint().exact(), None);
        let mut frames = Vec::new();
        while let Some(frame) = body.next_frame() {
            assert!(!frame.is_empty(), "an empty frame");
            assert!(frame.len() <= CHUNK_BYTES + TRAILER.len() || frame.len() > CHUNK_BYTES * 2);
            frames.push(frame);
        }
        assert!(body.is_end_stream());
        frames
    }

    /// The frames, checking each against the size hint and the frame size.
    fn frames(mut body: ListBody) -> Vec<Bytes> {
        let total = body.size_hint().exact().unwrap();
        let mut frames = Vec::new();
        let mut sent = 0;
        while let Some(frame) = body.next_frame() {
            assert!(!frame.is_empty(), "an empty frame");
            sent += frame.len() as u64;
            assert_eq!(body.size_hint().exact(), Some(total - sent));
            assert_eq!(body.is_end_stream(), sent == total);
            frames.push(frame);
        }
        assert_eq!(sent, total, "the Content-Length matches the body");
        assert!(body.next_frame().is_none(), "nothing after the end");
        frames
    }

    fn joined(frames: &[Bytes]) -> Value {
        serde_json::from_slice(&frames.concat()).expect("the body is JSON")
    }

    #[test]
    fn an_empty_list_has_an_empty_items_array() {
        let frames = frames(ListBody::new(&head(json!({"resourceVersion": "9"})), Vec::new()));
        assert_eq!(frames.len(), 1);
        assert_eq!(
            std::str::from_utf8(&frames[0]).unwrap(),
            r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":[]}"#
        );
    }

    #[test]
    fn one_item_without_a_comma() {
        let item = object("only", 10);
        let frames = frames(ListBody::new(&head(json!({"resourceVersion": "9"})), vec![item.clone()]));
        let expected = format!(
            r#"{{"kind":"ConfigMapList","apiVersion":"v1","metadata":{{"resourceVersion":"9"}},"items":[{}]}}"#,
            std::str::from_utf8(&item.json).unwrap()
        );
        assert_eq!(frames.concat(), expected.as_bytes());
    }

    #[test]
    fn the_continue_token_and_many_items_in_frames_of_bounded_size() {
        let items: Vec<_> = (0..500).map(|index| object(&format!("cm-{index:04}"), 700)).collect();
        let metadata =
            json!({"resourceVersion": "9", "continue": "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ", "remainingItemCount": 3});
        let frames = frames(ListBody::new(&head(metadata.clone()), items.clone()));
        assert!(frames.len() > 1, "{} frames", frames.len());
        for frame in &frames {
            assert!(frame.len() <= CHUNK_BYTES + TRAILER.len(), "a frame of {} bytes", frame.len());
        }
        // Frames are full but for the last: each holds as many objects as fit.
        for frame in &frames[..frames.len() - 1] {
            assert!(frame.len() + items[0].json.len() + 1 > CHUNK_BYTES, "a frame of {} bytes", frame.len());
        }
        let list = joined(&frames);
        assert_eq!(list["metadata"], metadata);
        assert_eq!(list["kind"], "ConfigMapList");
        let names: Vec<&str> =
            list["items"].as_array().unwrap().iter().map(|item| item["metadata"]["name"].as_str().unwrap()).collect();
        let expected: Vec<String> = (0..500).map(|index| format!("cm-{index:04}")).collect();
        assert_eq!(names, expected);
        assert_eq!(list["items"][42], items[42].value());
    }

    /// A Table streamed row by row is the Table built whole, large rows and a frame's leftover
    /// row included.
    #[test]
    fn a_streamed_table_is_the_table_built_whole() {
        let configmaps = registry::find("", "v1", "configmaps").unwrap();
        let mut items: Vec<_> = (0..300).map(|index| object(&format!("cm-{index:04}"), 400)).collect();
        items.insert(150, object("large", CHUNK_BYTES * 3));
        let metadata = json!({"resourceVersion": "9", "continue": "next"});
        // With whole objects the rows fill several frames, and the large one is a frame alone.
        for (include, frames_min) in
            [(crate::http::IncludeObject::Object, 4), (crate::http::IncludeObject::Metadata, 1)]
        {
            let version = crate::http::MetaVersion::V1;
            let head = serde_json::to_vec(&crate::table::head(configmaps, metadata.clone(), version)).unwrap();
            let rows = Box::new(crate::table::row_encoder(configmaps, include, version));
            let frames = unsized_frames(ListBody::encoded(&head, "rows", items.clone(), Some(rows)));
            assert!(frames.len() >= frames_min, "{} frames", frames.len());
            let objects: Vec<Value> = items.iter().map(|item| item.value()).collect();
            let whole = crate::table::table(configmaps, &objects, metadata.clone(), include, version);
            let streamed = joined(&frames);
            assert_eq!(streamed["rows"].as_array().unwrap().len(), 301);
            // The Age cells are computed at two moments; the rest must be equal.
            let without_age = |mut table: Value| {
                for row in table["rows"].as_array_mut().unwrap() {
                    row["cells"].as_array_mut().unwrap().pop();
                }
                table
            };
            assert_eq!(without_age(streamed), without_age(whole));
        }
    }

    #[test]
    fn a_large_object_is_a_frame_of_its_own() {
        let small = object("small", 10);
        let large = object("large", CHUNK_BYTES * 2);
        let items = vec![large.clone(), small.clone(), large.clone(), large.clone(), small.clone()];
        let frames = frames(ListBody::new(&head(json!({"resourceVersion": "9"})), items.clone()));
        // The large object's frames are its cached JSON itself, not a copy.
        let shared = frames.iter().filter(|frame| frame.as_ptr() == large.json.as_ptr()).count();
        assert_eq!(shared, 3);
        let list = joined(&frames);
        let got: Vec<Value> = list["items"].as_array().unwrap().clone();
        let expected: Vec<Value> = items.iter().map(|item| item.value()).collect();
        assert_eq!(got, expected);
    }
}
