//! The protobuf wire format: keys, varints, fixed-width numbers and length-delimited bytes. Every
//! read checks its bounds, so a truncated or malformed body is an error, never a panic; writes
//! append to a `Vec<u8>`, as go-to-protobuf's marshalers lay them out.

use crate::error::{Error, Result};

/// How a field's value is laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    LengthDelimited,
    Fixed32,
}

pub fn malformed(detail: impl std::fmt::Display) -> Error {
    Error::BadRequest(format!("the protobuf body could not be decoded: {detail}"))
}

/// Reads one message's bytes front to back.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.position >= self.bytes.len()
    }

    /// The next field's number and wire type.
    pub fn key(&mut self) -> Result<(u32, WireType)> {
        let key = self.varint()?;
        let wire_type = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::LengthDelimited,
            5 => WireType::Fixed32,
            // 3 and 4 are groups, which Kubernetes' messages never use.
            other => return Err(malformed(format!("unsupported wire type {other} at byte {}", self.position))),
        };
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(malformed(format!("illegal field number {number}")));
        }
        Ok((number as u32, wire_type))
    }

    pub fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.position).ok_or_else(|| malformed("unexpected end of a varint"))?;
            self.position += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(malformed("a varint longer than 10 bytes"))
    }

    pub fn length_delimited(&mut self) -> Result<&'a [u8]> {
        let length = self.varint()?;
        let length = usize::try_from(length).map_err(|_| malformed("a length beyond the address space"))?;
        self.take(length)
    }

    /// Skips a value of a field the schema does not know, as Go's decoders do.
    pub fn skip(&mut self, wire_type: WireType) -> Result<()> {
        match wire_type {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.take(8).map(drop),
            WireType::LengthDelimited => self.length_delimited().map(drop),
            WireType::Fixed32 => self.take(4).map(drop),
        }
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8]> {
        let end = self.position.checked_add(length).filter(|end| *end <= self.bytes.len()).ok_or_else(|| {
            malformed(format!("unexpected end of the body: {length} bytes wanted at byte {}", self.position))
        })?;
        let taken = &self.bytes[self.position..end];
        self.position = end;
        Ok(taken)
    }
}

/// Appends a varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends a field's key.
pub fn put_key(out: &mut Vec<u8>, number: u32, wire_type: WireType) {
    let code = match wire_type {
        WireType::Varint => 0,
        WireType::Fixed64 => 1,
        WireType::LengthDelimited => 2,
        WireType::Fixed32 => 5,
    };
    put_varint(out, (u64::from(number) << 3) | code);
}

/// Appends a varint field.
pub fn put_varint_field(out: &mut Vec<u8>, number: u32, value: u64) {
    put_key(out, number, WireType::Varint);
    put_varint(out, value);
}

/// Appends a length-delimited field: a string, bytes or a nested message.
pub fn put_bytes_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, WireType::LengthDelimited);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_read_back() {
        let mut out = Vec::new();
        put_varint_field(&mut out, 1, 150);
        put_varint_field(&mut out, 2, -1i64 as u64);
        put_bytes_field(&mut out, 300, b"abc");
        assert_eq!(&out[..3], &[0x08, 0x96, 0x01], "the protobuf documentation's example");
        let mut reader = Reader::new(&out);
        assert_eq!((reader.key().unwrap(), reader.varint().unwrap()), ((1, WireType::Varint), 150));
        assert_eq!((reader.key().unwrap(), reader.varint().unwrap() as i64), ((2, WireType::Varint), -1));
        assert_eq!(
            (reader.key().unwrap(), reader.length_delimited().unwrap()),
            ((300, WireType::LengthDelimited), &b"abc"[..])
        );
        assert!(reader.is_done());
    }

    #[test]
    fn varints_and_keys() {
        // Field 1, varint 150 (the protobuf documentation's example), then -1 as an int32 is
        // written: ten bytes.
        let mut reader = Reader::new(&[0x08, 0x96, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(reader.key().unwrap(), (1, WireType::Varint));
        assert_eq!(reader.varint().unwrap(), 150);
        assert_eq!(reader.varint().unwrap() as i64, -1);
        assert!(reader.is_done());
    }

    #[test]
    fn truncation_and_bad_keys_are_errors() {
        assert!(Reader::new(&[0x96]).varint().is_err());
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(Reader::new(&[0x0a, 0x05, b'a']).skip_key_and_value().is_err());
        assert!(Reader::new(&[0x0b]).key().is_err(), "groups are not supported");
        assert!(Reader::new(&[0x00]).key().is_err(), "field 0 does not exist");
        assert!(Reader::new(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
            .skip_key_and_value()
            .is_err());
    }

    impl Reader<'_> {
        fn skip_key_and_value(&mut self) -> Result<()> {
            let (_, wire_type) = self.key()?;
            self.skip(wire_type)
        }
    }
}
