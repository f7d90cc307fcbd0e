//! A Range reply encoded as the store's scan produces it: protobuf bytes in chunks, byte for byte
//! what prost makes of the same `RangeResponse`, so a large reply is held once, as its encoding,
//! rather than as `KeyValue`s, then prost messages, then tonic's buffer.

use bytes::{BufMut, Bytes, BytesMut};
use etcd_client::proto::{PbRangeResponse, PbResponseHeader};
use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message;
use store::KeyValue;

/// Chunks are this large (or one version, when larger): small enough that the last one's spare
/// room does not matter, large enough that a 1M-key reply is a few hundred of them.
const CHUNK_BYTES: usize = 64 * 1024;

/// RangeResponse's field 2 (`kvs`) and KeyValue's fields, with their wire types.
const KVS_TAG: u8 = (2 << 3) | 2;
const KEY_TAG: u8 = (1 << 3) | 2;
const CREATE_REVISION_TAG: u8 = 2 << 3;
const MOD_REVISION_TAG: u8 = 3 << 3;
const VERSION_TAG: u8 = 4 << 3;
const VALUE_TAG: u8 = (5 << 3) | 2;
const LEASE_TAG: u8 = 6 << 3;

/// An encoded `RangeResponse`, ready to be written to the wire (cloning shares the chunks).
#[derive(Debug, Default, Clone)]
pub struct EncodedRangeResponse {
    chunks: Vec<Bytes>,
    len: usize,
}

impl EncodedRangeResponse {
    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The encoding in order; each chunk can be freed as soon as it has been copied.
    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }

    /// The reply as a message again (for callers that want one; the wire never needs it).
    pub fn decode(self) -> Result<PbRangeResponse, prost::DecodeError> {
        let mut bytes = BytesMut::with_capacity(self.len);
        for chunk in self.chunks {
            bytes.put(chunk);
        }
        PbRangeResponse::decode(bytes.freeze())
    }
}

/// Encodes the versions of a Range reply one at a time; `finish` adds the fields known only once
/// the scan is over.
#[derive(Debug, Default)]
pub struct RangeReplyWriter {
    chunks: Vec<Bytes>,
    current: BytesMut,
    kvs_len: usize,
}

impl RangeReplyWriter {
    pub fn new() -> Self {
        RangeReplyWriter::default()
    }

    /// Appends `kv` as one element of `kvs`, as prost encodes an `mvccpb.KeyValue`: fields in
    /// tag order, those at their default value left out.
    pub fn push(&mut self, kv: &KeyValue) {
        let body = key_value_len(kv);
        let field = 1 + encoded_len_varint(body as u64) + body;
        if self.current.capacity() - self.current.len() < field {
            self.next_chunk(field);
        }
        let buf = &mut self.current;
        buf.put_u8(KVS_TAG);
        encode_varint(body as u64, buf);
        put_bytes(KEY_TAG, &kv.key, buf);
        put_int64(CREATE_REVISION_TAG, kv.create_revision, buf);
        put_int64(MOD_REVISION_TAG, kv.mod_revision, buf);
        put_int64(VERSION_TAG, kv.version, buf);
        put_bytes(VALUE_TAG, &kv.value, buf);
        put_int64(LEASE_TAG, kv.lease, buf);
        self.kvs_len += field;
    }

    /// The whole reply: `header` before the versions, `more` and `count` after them, which is
    /// prost's field order.
    pub fn finish(mut self, header: Option<PbResponseHeader>, more: bool, count: i64) -> EncodedRangeResponse {
        self.next_chunk(0);
        let head = PbRangeResponse { header, ..Default::default() }.encode_to_vec();
        let tail = PbRangeResponse { more, count, ..Default::default() }.encode_to_vec();
        let len = head.len() + self.kvs_len + tail.len();
        let mut chunks = Vec::with_capacity(self.chunks.len() + 2);
        chunks.push(Bytes::from(head));
        chunks.append(&mut self.chunks);
        chunks.push(Bytes::from(tail));
        chunks.retain(|chunk| !chunk.is_empty());
        EncodedRangeResponse { chunks, len }
    }

    /// Closes the current chunk and starts one with room for at least `room` bytes.
    fn next_chunk(&mut self, room: usize) {
        let full = std::mem::replace(&mut self.current, BytesMut::with_capacity(CHUNK_BYTES.max(room)));
        if !full.is_empty() {
            self.chunks.push(full.freeze());
        }
    }
}

fn key_value_len(kv: &KeyValue) -> usize {
    bytes_len(&kv.key)
        + int64_len(kv.create_revision)
        + int64_len(kv.mod_revision)
        + int64_len(kv.version)
        + bytes_len(&kv.value)
        + int64_len(kv.lease)
}

fn bytes_len(value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        1 + encoded_len_varint(value.len() as u64) + value.len()
    }
}

/// int64 goes on the wire as its two's complement: a negative value takes ten bytes.
fn int64_len(value: i64) -> usize {
    if value == 0 {
        0
    } else {
        1 + encoded_len_varint(value as u64)
    }
}

fn put_bytes(tag: u8, value: &[u8], buf: &mut BytesMut) {
    if !value.is_empty() {
        buf.put_u8(tag);
        encode_varint(value.len() as u64, buf);
        buf.put_slice(value);
    }
}

fn put_int64(tag: u8, value: i64, buf: &mut BytesMut) {
    if value != 0 {
        buf.put_u8(tag);
        encode_varint(value as u64, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert;

    fn kv(key: &[u8], value: &[u8], create: i64, modified: i64, version: i64, lease: i64) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
            create_revision: create,
            mod_revision: modified,
            version,
            lease,
        }
    }

    fn header() -> Option<PbResponseHeader> {
        Some(PbResponseHeader { cluster_id: u64::MAX, member_id: 7, revision: 300, raft_term: 2 })
    }

    fn flatten(reply: EncodedRangeResponse) -> Vec<u8> {
        let len = reply.len();
        let bytes: Vec<u8> = reply.into_chunks().iter().flat_map(|chunk| chunk.iter().copied()).collect();
        assert_eq!(bytes.len(), len, "len() is the bytes the chunks hold");
        bytes
    }

    /// The writer's bytes against prost's encoding of the same reply.
    fn assert_as_prost(kvs: Vec<KeyValue>, header: Option<PbResponseHeader>, more: bool, count: i64) {
        let mut writer = RangeReplyWriter::new();
        for kv in &kvs {
            writer.push(kv);
        }
        let ours = flatten(writer.finish(header, more, count));
        let prost = PbRangeResponse { header, kvs: kvs.into_iter().map(convert::key_value).collect(), more, count }
            .encode_to_vec();
        assert_eq!(ours, prost);
    }

    #[test]
    fn versions_encode_as_prost_encodes_them() {
        assert_as_prost(
            vec![
                kv(b"a", b"1", 2, 3, 1, 0),
                kv(b"keys-only", b"", 5, 9, 3, 0x7fff_ffff_ffff_ffff),
                kv(&[0, 0xff, 0x80], &[0; 300], 1, 1, 1, -1),
                kv(b"", b"", 0, 0, 0, 0),
                kv(b"negative", b"v", -5, i64::MIN, i64::MAX, 128),
            ],
            header(),
            true,
            12_345,
        );
    }

    #[test]
    fn empty_and_count_only_replies_encode_as_prost() {
        assert_as_prost(Vec::new(), header(), false, 0);
        assert_as_prost(Vec::new(), header(), false, 40);
        assert_as_prost(Vec::new(), None, false, 0);
        assert_as_prost(Vec::new(), Some(PbResponseHeader::default()), true, -1);
    }

    #[test]
    fn versions_larger_than_a_chunk_and_many_chunks_encode_as_prost() {
        let big = vec![b'x'; 3 * CHUNK_BYTES + 17];
        let mut kvs = vec![kv(b"big", &big, 1, 2, 3, 4)];
        kvs.extend((0..20_000).map(|i| kv(format!("key/{i:08}").as_bytes(), b"", i + 1, i + 2, 1, 0)));
        kvs.push(kv(b"big-again", &big, 1, 2, 3, 4));
        assert_as_prost(kvs, header(), false, 20_002);
    }

    #[test]
    fn chunks_stay_near_their_size_so_the_reply_is_held_about_once() {
        let mut writer = RangeReplyWriter::new();
        for i in 0..100_000 {
            writer.push(&kv(format!("m/{i:08}").as_bytes(), b"", i + 1, i + 1, 1, 0));
        }
        let reply = writer.finish(header(), false, 100_000);
        let len = reply.len();
        let chunks = reply.into_chunks();
        let held: usize = chunks.iter().map(Bytes::len).sum();
        assert_eq!(held, len);
        // Every chunk but the head, the tail and the last one is full to within one version.
        assert!(chunks.len() <= len / (CHUNK_BYTES - 64) + 3, "{} chunks for {len} bytes", chunks.len());
    }

    #[test]
    fn decode_gives_back_the_message() {
        let mut writer = RangeReplyWriter::new();
        writer.push(&kv(b"k", b"v", 4, 5, 2, 9));
        let decoded = writer.finish(header(), true, 3).decode().expect("decodes");
        assert_eq!(
            decoded,
            PbRangeResponse {
                header: header(),
                kvs: vec![convert::key_value(kv(b"k", b"v", 4, 5, 2, 9))],
                more: true,
                count: 3
            }
        );
    }
}
